# syntax=docker/dockerfile:1
# One image for every bb2snyk binary. The entrypoint runs the binary the first argument names
# (discoverer, org-creator, importer, bb2snyk, sandbox), and any other first argument as a bb2snyk command:
#   docker run IMAGE importer            docker run IMAGE discover --groupId=G
# Build with BuildKit (docker build, or deploy/image/build): the cargo registry and target directory are
# cache mounts, so a one-line change rebuilds only the crates it touches.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir /out \
 && cp target/release/discoverer target/release/org-creator target/release/importer \
       target/release/bb2snyk target/release/sandbox /out/

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="bb2snyk" \
      org.opencontainers.image.description="Brings every repository of a Bitbucket Cloud tenant into Snyk" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/bb2snyk/bb2snyk"
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin bb2snyk \
 && mkdir /work && chown 10001:10001 /work
COPY --from=build /out/ /usr/local/bin/
COPY deploy/image/entrypoint.sh /usr/local/bin/bb2snyk-entrypoint
USER 10001
# The seed workflow writes its files here (SNYK_LOG_PATH defaults to the working directory).
WORKDIR /work
ENV BB2SNYK_LOG_FORMAT=json
EXPOSE 9600
# The services answer /healthz on 9600; a one-off bb2snyk command has no endpoint and needs no check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9600 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["bb2snyk-entrypoint"]
CMD ["bb2snyk", "--help"]
