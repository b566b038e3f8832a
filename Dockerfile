# syntax=docker/dockerfile:1
# Spillway: multi-stage build, small non-root runtime image.
#   docker build -t spillway .
#   docker run --rm -p 8080:8080 -p 8443:8443 -v /path/to/site-config:/etc/spillway:ro spillway
# No config is baked in: mount a directory holding spillway.toml (and the TLS
# files it names) at /etc/spillway, or pass `run --config FILE`. Listeners must
# bind 0.0.0.0 inside a container; the admin listener stays on the container's
# loopback unless the config says otherwise (set [admin] token_file first).

FROM rust:1-slim-bookworm AS build
# cmake: a fallback of the TLS crypto crate's C build (aws-lc-sys).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin spillway \
    && cp target/release/spillway /spillway

# glibc, CA certificates and a non-root user (uid 65532), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /spillway /usr/local/bin/spillway
USER nonroot:nonroot
EXPOSE 8080 8443
STOPSIGNAL SIGTERM
# The image has no shell, curl or wget: the binary asks its own admin
# /healthz (std TCP, 3 s timeout; exit 0 on 200). With [admin] token_file set,
# add "--token-file", "/etc/spillway/admin.token"; with another admin
# address, "--admin", "ADDR".
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/spillway", "healthcheck", "--admin", "127.0.0.1:9901"]
ENTRYPOINT ["/usr/local/bin/spillway"]
CMD ["run", "--config", "/etc/spillway/spillway.toml"]
