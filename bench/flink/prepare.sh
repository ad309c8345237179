#!/usr/bin/env bash
# Prepares Apache Flink 2.3 for the side-by-side benchmarks and the Nexmark agreement test,
# once per machine, outside the repository:
#   1. the Flink jars, from PyPI's apache-flink-libraries wheel (no Maven needed), into
#      $STROM_CACHE/flink-<version>/pyflink/lib;
#   2. the Java jobs of bench/flink/src, compiled with plain javac against those jars into
#      $STROM_CACHE/flink-bench-classes/<hash of the sources>/.
# Prints one line: the Java classpath to run them with (`java -cp "<line>" strom.bench.…`).
# Everything else goes to stderr. Safe to run again: finished steps are skipped.
set -euo pipefail

FLINK_VERSION=2.3.0
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"
FLINK_HOME="$CACHE/flink-$FLINK_VERSION"
FLINK_LIB="$FLINK_HOME/pyflink/lib"

for tool in java javac python3; do
  command -v "$tool" >/dev/null || { echo "prepare.sh: '$tool' is required (Java 17 JDK, Python 3 with pip)" >&2; exit 1; }
done

if [ ! -f "$FLINK_HOME/.complete" ]; then
  echo "prepare.sh: fetching apache-flink-libraries==$FLINK_VERSION from PyPI (≈330 MB, once)" >&2
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$download" \
    "apache-flink-libraries==$FLINK_VERSION" >&2
  wheel="$(ls "$download"/apache_flink_libraries-*.whl)"
  rm -rf "$FLINK_HOME"
  mkdir -p "$FLINK_HOME"
  # Only the jars are needed; python's zipfile avoids depending on `unzip`.
  python3 - "$wheel" "$FLINK_HOME" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith("pyflink/lib/")])
EOF
  touch "$FLINK_HOME/.complete"
fi

# Compiled classes are keyed by a hash of the sources, so an edit recompiles and a stale
# build is never used.
hash="$(cd "$HERE/src" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
CLASSES="$CACHE/flink-bench-classes/$hash"
if [ ! -f "$CLASSES/.complete" ]; then
  echo "prepare.sh: compiling bench/flink/src" >&2
  rm -rf "$CLASSES"
  mkdir -p "$CLASSES"
  # shellcheck disable=SC2046
  javac -Xlint:-options -nowarn -d "$CLASSES" -cp "$FLINK_LIB/*" $(find "$HERE/src" -name '*.java') >&2
  # Resources (the table factory's service registration) go beside the classes.
  (cd "$HERE/src" && find . -type f ! -name '*.java' -exec cp --parents {} "$CLASSES" \;)
  touch "$CLASSES/.complete"
fi

echo "$CLASSES:$FLINK_LIB/*"
