# cachefill's image: the binary, and redis-server for plans with `launch = true`.
#   docker build -t your-registry/cachefill:0.2.0 .
#   docker run --rm -v "$PWD/plans:/plans" your-registry/cachefill:0.2.0 check /plans/fill.toml
# The build runs what .ci/run runs (a locked build of the crate); no image is built in CI.

FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY tests ./tests
COPY README.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE ./
RUN cargo build --release --locked --bin cachefill

FROM debian:bookworm-slim
# ca-certificates: TLS targets checked against the system's roots; redis-server: launched
# targets (and redis-check-rdb for exported RDB files).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates redis-server \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cachefill /usr/local/bin/cachefill
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/cachefill/
# Results and profiles are written to the working directory unless -o says otherwise.
WORKDIR /work
RUN useradd --system --home-dir /work cachefill && chown cachefill /work
USER cachefill
ENTRYPOINT ["cachefill"]
CMD ["--help"]
