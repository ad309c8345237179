# syntax=docker/dockerfile:1
# One image for the operator, the master and the workers: `strom` and `strom-operator`,
# nothing else. Built by `docker build .` (e2e/kind/run.sh) and by buildah without a Docker
# engine (e2e/image/build.sh).
#
# The runtime base is distroless `cc` (glibc, libgcc, libstdc++, CA certificates, tzdata,
# a `nonroot` user 65532, ~23 MB) rather than debian:bookworm-slim (~75 MB): the binaries
# need no shell, no package manager and nothing else from a distribution, RocksDB's C++
# needs libstdc++ (which `static` distroless lacks), and what is not there cannot be
# exploited or flagged by a scanner. Set RUNTIME_IMAGE=debian:bookworm-slim for a shell to
# debug with; USER is numeric, so either base works unchanged.
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
# RocksDB's bindings are generated with bindgen at build time (libclang); its C++ needs
# g++, which the rust image has. Skipped when the builder image carries libclang already.
RUN set -eu; \
    if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then \
        apt-get update -q; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libclang-dev; \
        rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY . .
# Release binaries without debug info: the image is for running, not for debugging, and
# symbols would double its size. A `vendor/` directory in the context (e2e/image/build.sh
# makes one with `cargo vendor`) builds offline; otherwise crates come from crates.io.
# The cache mounts keep the registry and target/ between builds on one machine (BuildKit
# and buildah both honour them) and keep the 3+ GB target/ out of the image layers.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    if [ -d vendor ]; then \
        set -- --offline \
            --config 'source.crates-io.replace-with="vendored-sources"' \
            --config "source.vendored-sources.directory=\"$PWD/vendor\""; \
    fi; \
    cargo build --release --locked "$@" -p strom -p strom-operator; \
    mkdir -p /out; \
    cp target/release/strom target/release/strom-operator /out/; \
    strip /out/strom /out/strom-operator

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="strom" \
      org.opencontainers.image.description="Strom: a Flink-class stream processor in Rust, and its Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/strom-dev/strom"
COPY --from=build /out/strom /out/strom-operator /usr/local/bin/
# The restricted Pod Security Standard wants a non-root uid the kubelet can check
# (runAsNonRoot needs it numeric); 65532 is distroless's `nonroot`.
USER 65532:65532
WORKDIR /tmp
# The operator, master and worker pods name their command; this is for `docker run`.
ENTRYPOINT ["/usr/local/bin/strom"]
CMD ["--help"]
