# Postgres 15 with pg_kafka preloaded. Built by docker-compose.yml.
# Not exercised by CI (the CI machines have no Docker engine); `make run` is the tested path.
FROM postgres:15-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential curl ca-certificates pkg-config libclang-dev clang cmake \
        postgresql-server-dev-15 libssl-dev zlib1g-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
RUN cargo install cargo-pgrx --version 0.18.0 --locked \
    && cargo pgrx init --pg15 /usr/lib/postgresql/15/bin/pg_config
WORKDIR /src
COPY . .
RUN cargo pgrx package --pg-config /usr/lib/postgresql/15/bin/pg_config

FROM postgres:15-bookworm
COPY --from=build /src/target/release/pg_kafka-pg15/usr/ /usr/
CMD ["postgres", "-c", "shared_preload_libraries=pg_kafka", "-c", "pg_kafka.host=0.0.0.0", \
     "-c", "pg_kafka.advertised_host=localhost"]
