# syntax=docker/dockerfile:1
# keywarden image: the `keywarden` binary (controller, verifier, run, crdgen) and the
# `kubectl-keywarden` plugin, on distroless with glibc, running as the non-root user 65532.
# Build: docker build -t keywarden:dev .

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# why: cache mounts keep the registry and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin keywarden --bin kubectl-keywarden \
 && install -D -m 0755 target/release/keywarden /out/keywarden \
 && install -D -m 0755 target/release/kubectl-keywarden /out/kubectl-keywarden

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/keywarden /usr/local/bin/keywarden
COPY --from=builder /out/kubectl-keywarden /usr/local/bin/kubectl-keywarden
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/keywarden"]
CMD ["--help"]
