#!/usr/bin/env bash
# Installs what building, running and testing pg_kafka needs, skipping what is present.
# Safe to run repeatedly; used by `make run`, `make test` and .ci/run.
set -euo pipefail

# The major to test against (argument, default 15). 15 comes from Debian's packages; others
# are built from Debian's source packages (scripts/build-postgres.sh). 15 is always set up:
# the lint and unit tiers build against it.
TEST_MAJOR=${1:-15}
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGRX_VERSION=0.18.0
APT_PACKAGES=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo kcat
              cmake pkg-config libcurl4-openssl-dev libssl-dev zlib1g-dev openssl iproute2
              openjdk-17-jdk-headless maven
              patroni etcd-server curl) # the last three for `make ha-test`
if [ "$TEST_MAJOR" != "$PG_MAJOR" ]; then
    APT_PACKAGES+=(bison flex) # PostgreSQL 18's tarball no longer carries generated parsers
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (takes several minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# Every major set up so far stays in pgrx's configuration (init rewrites the whole file).
repo=$(cd "$(dirname "$0")/.." && pwd)
init_args=(--pg$PG_MAJOR "$PG_CONFIG")
for major in 16 17 18; do
    if [ "$major" = "$TEST_MAJOR" ]; then
        "$repo/scripts/build-postgres.sh" "$major" "$repo/target/pg/$major"
    fi
    if [ -x "$repo/target/pg/$major/bin/pg_config" ]; then
        init_args+=(--pg$major "$repo/target/pg/$major/bin/pg_config")
    fi
done
PGRX_HOME=${PGRX_HOME:-$HOME/.pgrx}
needs_init=false
for ((i = 0; i < ${#init_args[@]}; i += 2)); do
    grep -q "${init_args[i]#--} = \"${init_args[i+1]}\"" "$PGRX_HOME/config.toml" 2>/dev/null || needs_init=true
done
# A major configured from a checkout since deleted (another clone's target/pg, say) breaks
# every pgrx build, whatever major it is for, and `cargo pgrx init` keeps entries it is not
# given: such a configuration is removed and written anew.
if [ -f "$PGRX_HOME/config.toml" ]; then
    while IFS= read -r configured; do
        if [ ! -x "$configured" ]; then
            echo "setup: $PGRX_HOME/config.toml names $configured, which is gone: writing it anew"
            rm -f "$PGRX_HOME/config.toml"
            needs_init=true
            break
        fi
    done < <(grep -o '"[^"]*pg_config"' "$PGRX_HOME/config.toml" | tr -d '"')
fi
if $needs_init; then
    echo "setup: cargo pgrx init ${init_args[*]}"
    cargo pgrx init "${init_args[@]}"
fi

# kafka-python: an independent client implementation the end-to-end tests also consume with.
KAFKA_PYTHON_VERSION=3.0.12
if ! python3 -c "import kafka, sys; sys.exit(kafka.__version__ != '$KAFKA_PYTHON_VERSION')" 2>/dev/null; then
    echo "setup: pip install kafka-python==$KAFKA_PYTHON_VERSION"
    python3 -m pip install -q --root-user-action=ignore "kafka-python==$KAFKA_PYTHON_VERSION"
fi
# kafka-python's codecs: topics in the batch layout send consumers the batches as the
# producer compressed them (as Kafka does), so a consumer needs the producer's codec.
PY_LZ4_VERSION=4.4.5
PY_ZSTANDARD_VERSION=0.25.0
if ! python3 -c "import lz4, zstandard, sys; sys.exit(lz4.__version__ != '$PY_LZ4_VERSION' or zstandard.__version__ != '$PY_ZSTANDARD_VERSION')" 2>/dev/null; then
    echo "setup: pip install lz4==$PY_LZ4_VERSION zstandard==$PY_ZSTANDARD_VERSION"
    python3 -m pip install -q --root-user-action=ignore "lz4==$PY_LZ4_VERSION" "zstandard==$PY_ZSTANDARD_VERSION"
fi
# aiokafka: an asyncio client of its own protocol code, in the transactions tests.
AIOKAFKA_VERSION=0.14.0
if ! python3 -c "import aiokafka, sys; sys.exit(aiokafka.__version__ != '$AIOKAFKA_VERSION')" 2>/dev/null; then
    echo "setup: pip install aiokafka==$AIOKAFKA_VERSION"
    python3 -m pip install -q --root-user-action=ignore "aiokafka==$AIOKAFKA_VERSION"
fi
# confluent-kafka: librdkafka 2.x with SASL and TLS, for the security end-to-end tests
# (Debian's kcat links librdkafka 2.0, which still repeats its SCRAM nonce).
CONFLUENT_KAFKA_VERSION=2.16.1
if ! python3 -c "import confluent_kafka, sys; sys.exit(confluent_kafka.__version__ != '$CONFLUENT_KAFKA_VERSION')" 2>/dev/null; then
    echo "setup: pip install confluent-kafka==$CONFLUENT_KAFKA_VERSION"
    python3 -m pip install -q --root-user-action=ignore "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
fi
