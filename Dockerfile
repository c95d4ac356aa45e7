# syntax=docker/dockerfile:1
# One build of the whole workspace, then one small image per service:
#   docker build --target event-api -t streamproc/event-api .
# (scripts/build_images.sh builds all six). Targets: event-api,
# event-producer, consumer-high, consumer-low, aggregator, web-ui; and for
# the "file mounts and watchers" development loop, dev (rebuilds from a
# mounted source tree) and dev-binary (restarts a mounted, locally built
# binary). Versions are pinned here and bumped on purpose; the Rust version
# is the one the tests run with.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm
ARG NODE_VERSION=20.18.1
ARG CARGO_CHEF_VERSION=0.1.77
ARG WATCHEXEC_VERSION=2.3.2

# ---- build ---------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION
# librdkafka is built from source by rdkafka's build script.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config python3 zlib1g-dev \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# Dependencies first: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --profile image --locked --recipe-path recipe.json
COPY . .
# The image profile (Cargo.toml): the release build without debug info.
RUN cargo build --profile image --locked --bins \
 && mkdir /out \
 && cp target/image/event-api target/image/event-producer target/image/consumer-high \
       target/image/consumer-low target/image/aggregator target/image/web-ui /out/

# The page's charting library, from the npm registry under the lock file.
FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS web-assets
WORKDIR /web
COPY services/web-ui/package.json services/web-ui/package-lock.json services/web-ui/vendor.mjs ./
COPY services/web-ui/assets ./assets
RUN npm ci --omit=dev --no-audit --no-fund

# ---- runtime -------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin streamproc
# Listen on every interface inside a container; the chart sets PORT.
ENV HOST=0.0.0.0 RUST_LOG=info
USER 10001:10001

FROM runtime AS event-api
COPY --from=builder /out/event-api /usr/local/bin/event-api
EXPOSE 9998
ENTRYPOINT ["/usr/local/bin/event-api"]

FROM runtime AS event-producer
COPY --from=builder /out/event-producer /usr/local/bin/event-producer
EXPOSE 9999
ENTRYPOINT ["/usr/local/bin/event-producer"]

FROM runtime AS consumer-high
COPY --from=builder /out/consumer-high /usr/local/bin/consumer-high
EXPOSE 9996
ENTRYPOINT ["/usr/local/bin/consumer-high"]

FROM runtime AS consumer-low
COPY --from=builder /out/consumer-low /usr/local/bin/consumer-low
EXPOSE 9997
ENTRYPOINT ["/usr/local/bin/consumer-low"]

FROM runtime AS aggregator
COPY --from=builder /out/aggregator /usr/local/bin/aggregator
EXPOSE 9995
ENTRYPOINT ["/usr/local/bin/aggregator"]

# Listens on 8080 (no root needed); the chart's Service answers on 80.
FROM runtime AS web-ui
COPY --from=builder /out/web-ui /usr/local/bin/web-ui
COPY --from=web-assets /web/assets /srv/web-ui
ENV ASSETS_DIR=/srv/web-ui PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/web-ui"]

# ---- development -----------------------------------------------------------
# dev: the source tree is mounted at /src (see scripts/dev_watch.sh);
# watchexec rebuilds and restarts SERVICE on every change. Build tools are
# inside on purpose; never ship this target.
FROM chef AS dev
ARG WATCHEXEC_VERSION
RUN cargo install watchexec-cli --locked --version "${WATCHEXEC_VERSION}"
ENV HOST=0.0.0.0 CARGO_TARGET_DIR=/cache/target SERVICE=event-api
WORKDIR /src
ENTRYPOINT ["sh", "-c", "exec watchexec --restart --watch /src/crates --watch /src/services --exts rs,toml,sql -- cargo run --release --bin \"$SERVICE\""]

# dev-binary: the repository is mounted at /src, with binaries built on the
# developer's machine (Debian 12, like this image) in target/release;
# watchexec restarts SERVICE whenever its binary changes. watchexec stops at
# once without an existing HOME, and would skip target/ as the mounted
# .gitignore says, hence HOME and the two --no-*-ignore flags.
FROM runtime AS dev-binary
COPY --from=dev /usr/local/cargo/bin/watchexec /usr/local/bin/watchexec
ENV SERVICE=event-api HOME=/tmp
WORKDIR /src
ENTRYPOINT ["sh", "-c", "exec watchexec --restart --no-vcs-ignore --no-project-ignore --watch /src/target/release --filter \"$SERVICE\" -- \"/src/target/release/$SERVICE\""]
