#!/usr/bin/env bash
# Builds the Strom image from the repository's Dockerfile on a machine with neither a
# Docker engine nor a registry: Debian's buildah (vfs storage, chroot isolation) builds
# it from two base images made here, under the names the Dockerfile defaults to:
#
#   RUNTIME_IMAGE  (gcr.io/distroless/cc-debian12:nonroot) — what distroless cc is made
#                  of (glibc, libgcc, libstdc++, CA bundle, tzdata, netbase, a nonroot
#                  user 65532), taken from a `debootstrap --variant=minbase bookworm` root
#                  filesystem fetched from the Debian mirror this machine's apt uses;
#   BUILDER_IMAGE  (rust:1.95-bookworm) — the same root filesystem plus g++ and
#                  libclang-dev (apt, inside the image) and this machine's Rust toolchain,
#                  laid out as in the official rust image (/usr/local/{rustup,cargo}).
#
# The crates are vendored outside the build (`cargo vendor`, from this machine's cargo
# cache and registry configuration), so the build's RUN steps need no network at all.
# Then the image runs `strom --version` and `strom-operator crd`, and its size is printed.
#
# Usage: e2e/image/build.sh            (as root; installs buildah and debootstrap if missing)
# Env:   IMAGE (localhost/strom:dev), BUILDER_IMAGE, RUNTIME_IMAGE, DEBIAN_MIRROR,
#        STROM_IMAGE_REV=<git revision> to build a commit instead of the work tree,
#        REBUILD_BASES=1 to remake the base images, STROM_IMAGE_CACHE (work directory,
#        default ${XDG_CACHE_HOME:-$HOME/.cache}/strom/image).
# A release build with RocksDB takes 20-40 minutes on two cores; run it with `nice -n 19`.
# Clean up: buildah --storage-driver vfs rmi <names printed at the end>; rm -rf the cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

IMAGE=${IMAGE:-localhost/strom:dev}
BUILDER_IMAGE=${BUILDER_IMAGE:-docker.io/library/rust:1.95-bookworm}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-gcr.io/distroless/cc-debian12:nonroot}
SUITE=bookworm
WORK=${STROM_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strom/image}
BUILDAH=(buildah --storage-driver vfs)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------- tools
need_apt=()
command -v buildah >/dev/null || need_apt+=(buildah)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        die "needs ${need_apt[*]} (Debian: apt-get install ${need_apt[*]}), and root"
    fi
    log "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need_apt[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q "${need_apt[@]}" >/dev/null; }
fi
[[ $(id -u) == 0 ]] || die "run as root: debootstrap and buildah's vfs storage need it"
command -v cargo >/dev/null || die "needs cargo (the Rust toolchain that goes into the builder image)"

# The Debian mirror apt uses here (deb822 .sources or one-line .list), and its proxy.
detect_mirror() {
    local m
    m=$(awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -E '/debian/?$' | head -n1 || true)
    if [[ -z $m ]]; then
        m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                | grep -E '/debian/?$' | head -n1 || true)
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(detect_mirror)}
APT_PROXY=
eval "$(apt-config shell APT_PROXY Acquire::http::Proxy 2>/dev/null || true)"
if [[ -n $APT_PROXY && -z ${http_proxy:-} ]]; then
    export http_proxy=$APT_PROXY
fi

mkdir -p "$WORK"
started=$(date +%s)

have_image() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# Working containers are removed on any exit.
containers=()
cleanup() {
    local c
    for c in "${containers[@]}"; do
        "${BUILDAH[@]}" rm "$c" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
new_container() { # image -> container id (kept in `containers` for the cleanup)
    local c
    c=$("${BUILDAH[@]}" from --pull=never --quiet "$1")
    containers+=("$c")
    printf '%s\n' "$c"
}
brun() { # container, command…: a RUN step, as the Dockerfile's would be
    local c=$1
    shift
    "${BUILDAH[@]}" run --isolation chroot "$c" -- "$@"
}

# ------------------------------------------------------------- the Debian rootfs
ROOTFS=$WORK/rootfs-$SUITE
BASE_IMAGE=localhost/strom-debian-minbase:$SUITE
if [[ -n ${REBUILD_BASES:-} ]]; then
    rm -rf "$ROOTFS"
    "${BUILDAH[@]}" rmi -f "$BASE_IMAGE" "$RUNTIME_IMAGE" "$BUILDER_IMAGE" >/dev/null 2>&1 || true
fi
if ! have_image "$BASE_IMAGE"; then
    if [[ ! -e $ROOTFS/.complete ]]; then
        rm -rf "$ROOTFS"
        log "debootstrap --variant=minbase $SUITE from $MIRROR"
        debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
        rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
        touch "$ROOTFS/.complete"
    fi
    log "importing the root filesystem as $BASE_IMAGE"
    c=$(new_container scratch)
    # buildah copy would put its own ownership on every file; tar keeps the rootfs's.
    mnt=$("${BUILDAH[@]}" mount "$c")
    tar -C "$ROOTFS" --exclude=./.complete -cf - . | tar -C "$mnt" -xpf -
    "${BUILDAH[@]}" umount "$c" >/dev/null
    "${BUILDAH[@]}" config --os linux --arch amd64 --cmd /bin/bash \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    "${BUILDAH[@]}" commit --quiet "$c" "$BASE_IMAGE" >/dev/null
fi

# ------------------------------------------------------------- the runtime image
if ! have_image "$RUNTIME_IMAGE"; then
    log "making $RUNTIME_IMAGE (distroless cc's contents, from Debian $SUITE)"
    c=$(new_container "$BASE_IMAGE")
    brun "$c" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates tzdata netbase' \
        >"$WORK/runtime-apt.log" 2>&1 || { tail -n 20 "$WORK/runtime-apt.log" >&2; die "apt-get in the runtime base failed"; }
    # The files of these packages, with directories resolved through the merged-/usr
    # symlinks, minus documentation and iconv modules nothing here uses.
    # shellcheck disable=SC2016 # expanded by the container's shell
    brun "$c" sh -c '
        dpkg -L base-files netbase tzdata libc6 libgcc-s1 libstdc++6 | while read -r p; do
            [ -d "$p" ] && continue
            [ -e "$p" ] || [ -L "$p" ] || continue
            printf "%s/%s\n" "$(readlink -f "$(dirname "$p")")" "$(basename "$p")"
        done | sort -u | grep -v -E "^/usr/share/(doc|man|info|lintian|common-licenses)/|/gconv/"
        echo /etc/ssl/certs/ca-certificates.crt' >"$WORK/runtime-files.txt"
    slice=$WORK/runtime-rootfs
    rm -rf "$slice"
    mkdir -p "$slice"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,home/nonroot,root,tmp,var/tmp}
    for d in bin sbin lib lib64; do ln -s "usr/$d" "$slice/$d"; done
    mnt=$("${BUILDAH[@]}" mount "$c")
    sed 's|^/||' "$WORK/runtime-files.txt" | tar -C "$mnt" -cf - --no-recursion -T - | tar -C "$slice" -xpf -
    "${BUILDAH[@]}" umount "$c" >/dev/null
    chmod 1777 "$slice/tmp" "$slice/var/tmp"
    chmod 700 "$slice/root"
    chown 65532:65532 "$slice/home/nonroot"
    cat >"$slice/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$slice/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
tty:x:5:
staff:x:50:
EOF
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' \
        >"$slice/etc/nsswitch.conf"
    r=$(new_container scratch)
    mnt=$("${BUILDAH[@]}" mount "$r")
    tar -C "$slice" -cf - . | tar -C "$mnt" -xpf -
    "${BUILDAH[@]}" umount "$r" >/dev/null
    "${BUILDAH[@]}" config --os linux --arch amd64 --user 65532:65532 --workingdir /home/nonroot \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$r"
    "${BUILDAH[@]}" commit --quiet "$r" "$RUNTIME_IMAGE" >/dev/null
    rm -rf "$slice"
fi

# ------------------------------------------------------------- the builder image
if ! have_image "$BUILDER_IMAGE"; then
    sysroot=$(rustc --print sysroot)
    rust_version=$(rustc --version | awk '{ print $2 }')
    host=$(rustc -vV | sed -n 's/^host: //p')
    toolchain=$rust_version-$host
    log "making $BUILDER_IMAGE (g++, libclang-dev, Rust $rust_version from $sysroot)"
    c=$(new_container "$BASE_IMAGE")
    # What the official rust:bookworm image has that the build uses (g++, make,
    # pkg-config, CA certificates), plus libclang-dev for RocksDB's bindgen.
    brun "$c" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++ make pkg-config libclang-dev ca-certificates binutils && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb' \
        >"$WORK/builder-apt.log" 2>&1 || { tail -n 20 "$WORK/builder-apt.log" >&2; die "apt-get in the builder base failed"; }
    mnt=$("${BUILDAH[@]}" mount "$c")
    tcdir=$mnt/usr/local/rustup/toolchains/$toolchain
    mkdir -p "$tcdir" "$mnt/usr/local/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$tcdir" -xf -
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" \
        >"$mnt/usr/local/rustup/settings.toml"
    # rustup's proxies, as in the official image: `cargo` is rustup under another name.
    install -m 0755 "$(command -v rustup)" "$mnt/usr/local/cargo/bin/rustup"
    for b in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver rust-gdb rust-lldb; do
        ln -sf rustup "$mnt/usr/local/cargo/bin/$b"
    done
    "${BUILDAH[@]}" umount "$c" >/dev/null
    "${BUILDAH[@]}" config \
        --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env RUST_VERSION="$rust_version" "$c"
    brun "$c" cargo --version >/dev/null || die "cargo does not run in the builder image"
    "${BUILDAH[@]}" commit --quiet "$c" "$BUILDER_IMAGE" >/dev/null
fi
log "base images ready after $(($(date +%s) - started)) s"

# ------------------------------------------------ the build context, crates vendored
# A snapshot of the work tree (tracked and untracked files, minus what .gitignore
# excludes) or of STROM_IMAGE_REV, so the build sees one consistent state even while people edit, with the
# crates of its Cargo.lock vendored next to it (the Dockerfile builds offline then).
CTX=$WORK/context
rm -rf "$CTX"
mkdir -p "$CTX"
if [[ -n ${STROM_IMAGE_REV:-} ]]; then
    # A committed revision instead (e.g. HEAD while the work tree is half edited).
    git -C "$REPO" archive --format=tar "$STROM_IMAGE_REV" | tar -C "$CTX" -xf -
    cp "$REPO/.dockerignore" "$CTX/.dockerignore"
else
    git -C "$REPO" ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done \
        | tar -C "$REPO" --null -T - -cf - | tar -C "$CTX" -xf -
fi
lock_hash=$(sha256sum "$CTX/Cargo.lock" | cut -c1-16)
VENDOR=$WORK/vendor-$lock_hash
if [[ ! -e $VENDOR/.complete ]]; then
    log "cargo vendor (Cargo.lock $lock_hash)"
    rm -rf "$WORK"/vendor-*
    cargo vendor --locked --versioned-dirs --manifest-path "$CTX/Cargo.toml" "$VENDOR" \
        >/dev/null 2>"$WORK/vendor.log" || { tail -n 20 "$WORK/vendor.log" >&2; die "cargo vendor failed"; }
    touch "$VENDOR/.complete"
fi
cp -al "$VENDOR" "$CTX/vendor"
rm -f "$CTX/vendor/.complete"

# ------------------------------------------------------------------- the build
log "buildah bud $IMAGE (release build of strom and strom-operator; log: $WORK/build.log)"
build_started=$(date +%s)
if ! "${BUILDAH[@]}" bud --isolation chroot --pull=never --layers=false \
        --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
        -f "$REPO/Dockerfile" -t "$IMAGE" "$CTX" >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    die "the image build failed (log: $WORK/build.log)"
fi
build_secs=$(($(date +%s) - build_started))
rm -rf "$CTX"

# ------------------------------------------------------------------- the checks
c=$(new_container "$IMAGE")
version=$(brun "$c" strom --version) || die "strom --version failed in $IMAGE"
crd=$(brun "$c" strom-operator crd) || die "strom-operator crd failed in $IMAGE"
user=$("${BUILDAH[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
size=$("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE" | head -n1)
bins=$(du -ch "$("${BUILDAH[@]}" mount "$c")"/usr/local/bin/* | tail -n1 | cut -f1)
"${BUILDAH[@]}" umount "$c" >/dev/null

echo "image:            $IMAGE ($size; the two binaries: $bins; user $user)"
echo "build:            ${build_secs}s (bases and vendoring: $((build_started - started))s)"
echo "strom --version:  $version"
echo "strom-operator crd | head -n 5:"
printf '%s\n' "$crd" | sed -n '1,5s/^/    /p'
echo "bases:            $RUNTIME_IMAGE, $BUILDER_IMAGE, $BASE_IMAGE (buildah --storage-driver vfs images)"
