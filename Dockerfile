# One image for every bb2snyk binary: pick it with the container's command (discoverer, org-creator,
# importer, bb2snyk, sandbox).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/discoverer target/release/org-creator target/release/importer \
       target/release/bb2snyk target/release/sandbox /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin bb2snyk
COPY --from=build /out/ /usr/local/bin/
USER 10001
ENV BB2SNYK_LOG_FORMAT=json
CMD ["bb2snyk", "--help"]
