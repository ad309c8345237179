#!/usr/bin/env bash
# Strom against Apache Flink 2.3 on this machine, in one command from a fresh clone:
# prepares Flink (once, cached outside the repository), builds strom-bench, runs every
# case on both systems in turn, prints the table and writes it to bench/RESULTS.md.
# Extra arguments go to `strom-bench compare` (see `--help`), e.g. `--only nexmark`.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strom/target}"
export CARGO_TERM_COLOR=never

scripts/prerequisites
bench/flink/prepare.sh >/dev/null
cargo build --profile bench --locked -p strom-bench
exec "$CARGO_TARGET_DIR/release/strom-bench" compare --output bench/RESULTS.md "$@"
