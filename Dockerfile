# syntax=docker/dockerfile:1
#
# The imagegate image: a release build of the `imagegate` binary on a
# distroless base (no shell, no package manager), run as a numeric non-root
# user.
#
#   docker build -t registry.example.com/platform/imagegate:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Reproducible builds: pin both base images by digest (--build-arg
# RUST_IMAGE=...@sha256:..., RUNTIME_IMAGE=...@sha256:...), build the same
# commit (Cargo.lock is honoured with --locked) and set SOURCE_DATE_EPOCH
# (BuildKit then clamps file times) and CREATED to the commit time.
# tests/chart/test_dockerfile.py checks this file against Cargo.toml and
# Cargo.lock: build flags, native libraries, context, labels, user.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# sequoia-openpgp's crypto-nettle backend: nettle-sys links Nettle (and
# Hogweed, GMP), found with pkg-config; its bindings are made with bindgen,
# which needs libclang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev nettle-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what the build reads (Cargo.toml, Cargo.lock,
# src/, benches/).
COPY . .
# The release build. Then every shared library the binary needs beyond the C
# runtime (which the distroless cc image has) is copied next to it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin imagegate \
 && mkdir -p /out/bin /out/lib \
 && cp target/release/imagegate /out/bin/imagegate \
 && ldd /out/bin/imagegate \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|libgcc_s)\.so' \
    | xargs -r cp -L -t /out/lib/

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://example.invalid/imagegate
LABEL org.opencontainers.image.title="imagegate" \
      org.opencontainers.image.description="Kubernetes admission webhook enforcing containers-policy.json image signature policy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/lib/ /usr/lib/imagegate/
COPY --from=build /out/bin/imagegate /usr/local/bin/imagegate
ENV LD_LIBRARY_PATH=/usr/lib/imagegate
# The distroless "nonroot" user; numeric so that Kubernetes can check
# runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# Fails the build if the binary cannot load its libraries here (exec form:
# the image has no shell).
RUN ["/usr/local/bin/imagegate", "--version"]
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/imagegate"]
CMD ["serve"]
