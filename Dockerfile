# syntax=docker/dockerfile:1.7
#
# memory-monitor image: the release binary with its eBPF programs embedded.
# Built and pushed by CI (.github/workflows/image.yml); see deploy/README.md.
# Architecture-neutral: CI builds it natively for linux/amd64 and linux/arm64
# (both base images are multi-arch; the host triple comes from `rustc -vV`).
#
#   docker build -t memory-monitor .
#
# The builder and runtime stages share one Debian release (bookworm, glibc
# 2.36) so the dynamically linked binary finds the libc it was built against.

# Stable toolchain for the monitor itself (the workspace's rust-version).
ARG RUST_VERSION=1.95.0
# Dated nightly for the eBPF programs (-Z build-std=core needs nightly and its
# rust-src). Its LLVM major must match bpf-linker's `llvm-N` feature below:
# `rustc +nightly-2026-05-20 -vV` prints "LLVM version: 22.1.4".
ARG EBPF_NIGHTLY=nightly-2026-05-20
ARG EBPF_LLVM_MAJOR=22
ARG BPF_LINKER_VERSION=0.13.0

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG EBPF_NIGHTLY
ARG EBPF_LLVM_MAJOR
ARG BPF_LINKER_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# aya-build (monitor/build.rs) runs `rustup run nightly cargo build ...` with
# the plain name `nightly`, and rustup refuses to `toolchain link` a custom
# toolchain under that reserved name. So install the dated nightly and point
# the `nightly-<host>` directory at it: `rustup run nightly` then uses the
# pinned compiler and never updates it.
RUN rustup toolchain install "${EBPF_NIGHTLY}" --profile minimal --component rust-src \
    && host="$(rustc -vV | sed -n 's/^host: //p')" \
    && ln -s "${EBPF_NIGHTLY}-${host}" "${RUSTUP_HOME}/toolchains/nightly-${host}" \
    && rustup run nightly rustc -vV | grep "^LLVM version: ${EBPF_LLVM_MAJOR}\."

# bpf-linker links against the nightly's own libLLVM (no system LLVM), so its
# LLVM always reads the bitcode that nightly emits. rustup ships only the
# versioned libLLVM.so.N.M-rust-...; the build links -lLLVM, so add the
# unversioned name (as `cargo xtask setup` does locally).
RUN sysroot="$(rustup run nightly rustc --print sysroot)" \
    && versioned="$(find "${sysroot}/lib" -maxdepth 1 -name "libLLVM.so.${EBPF_LLVM_MAJOR}.*" -printf '%f\n' | head -n 1)" \
    && test -n "${versioned}" \
    && ln -sf "${versioned}" "${sysroot}/lib/libLLVM.so" \
    && LLVM_PREFIX="${sysroot}" cargo install bpf-linker --version "${BPF_LINKER_VERSION}" \
        --locked --no-default-features --features "llvm-${EBPF_LLVM_MAJOR}" \
    && bpf-linker --version

WORKDIR /src
COPY . .

# CI=true makes monitor/build.rs fail instead of silently embedding an empty
# eBPF stub: an image without its eBPF side must not ship.
ENV CI=true
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p monitor --bin memory-monitor \
    && install -D -m 0755 target/release/memory-monitor /out/memory-monitor \
    && /out/memory-monitor --version \
    && install -d -m 0700 /out/spool

# Runtime: distroless "cc" (glibc, libgcc, CA certificates for S3 and Slack
# over TLS, no shell, no package manager). The nonroot tag runs as
# 65532:65532; the manifests set the UID each deployment mode needs.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="memory-monitor" \
      org.opencontainers.image.description="Sidecar that watches a jemalloc process's memory and ships heap profiles on spikes and leaks" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/memory-monitor /usr/local/bin/memory-monitor
# The default SPOOL_DIR, owned by the image's user: the monitor keeps dumps
# only in a directory it owns, and off the /tmp it shares with the service.
# (The manifests mount an emptyDir over /var/spool; the monitor then creates
# it there.)
COPY --from=builder --chown=65532:65532 /out/spool /var/spool/memory-monitor
# Procfs mode by default: non-root. A numeric UID lets Kubernetes check
# runAsNonRoot without inspecting /etc/passwd.
USER 65532:65532
# /metrics, /healthz, /readyz (METRICS_ADDR).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/memory-monitor"]
