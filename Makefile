# pg_kafka: `make run` to start Postgres with the Kafka listener, `make test` for the suite.

# PG: the PostgreSQL major to build, run and test against. 15 is Debian's package on this
# machine; 17 and 18 are built from Debian's source packages into target/pg/<major> by
# scripts/build-postgres.sh (cached in ~/.cache/pg_kafka), e.g. `make test PG=18`; 16 is
# unpacked from PyPI's pgserver wheel, which carries its server headers (`make test PG=16`).
PG ?= 15
ifeq ($(PG),15)
PG_CONFIG       ?= /usr/lib/postgresql/15/bin/pg_config
PG_SUFFIX       :=
else
PG_CONFIG       ?= $(abspath target/pg/$(PG))/bin/pg_config
PG_SUFFIX       := -pg$(PG)
endif
# Where the server binaries are: scripts/cluster.sh runs initdb/pg_ctl from here, and the
# end-to-end tests put it first on PATH (psql, pg_dump of the same major).
export PG_BIN := $(patsubst %/pg_config,%,$(PG_CONFIG))
PGKAFKA_DATA    ?= target/pgdata$(PG_SUFFIX)
PGKAFKA_PG_PORT ?= 5432
PGKAFKA_PORT    ?= 9092

# The end-to-end tests run their own cluster on other ports, so `make run` can stay up.
# Every test port lies below Linux's ephemeral range (32768-60999): a client's outgoing
# connection (cargo's, a test's) can never hold one when a cluster starts (CI once failed
# that way on 59094).
E2E_DATA     ?= target/e2e-pgdata$(PG_SUFFIX)
E2E_PG_PORT  ?= 26432
E2E_PORT     ?= 30092
# Beside PLAINTEXT on E2E_PORT, the end-to-end cluster listens with SASL and TLS, using a
# throwaway CA and certificates in E2E_CERTS (scripts/test-certs.sh).
E2E_SASL_PLAINTEXT_PORT ?= 30094
E2E_SASL_SSL_PORT       ?= 30095
E2E_SSL_PORT            ?= 30096
E2E_METRICS_PORT        ?= 30098
E2E_CERTS               ?= target/e2e-certs
# e.g. E2E_ARGS='--test outbox' to run one end-to-end test binary
E2E_ARGS                ?=
# How the test clusters' topics store messages unless a test says otherwise
# (pg_kafka.default_topic_storage): rows or batches. CI runs the tiers on both.
TOPIC_STORAGE           ?= rows
PGRX_TEST_DATA ?= target/pgrx-test-data$(PG_SUFFIX)

# `make bench` runs on its own fresh cluster too. BENCH_CONF: extra postgresql.conf lines
# (e.g. tuning/postgresql.conf.sample); BENCH_MESSAGES: messages per run (1,000,000);
# BENCH_ROUNDS: rounds per case, reported as medians (3). librdkafka's rdkafka_performance
# is built once into target/rdkafka-performance.
BENCH_DATA    ?= target/bench-pgdata
BENCH_PG_PORT ?= 26433
BENCH_PORT    ?= 30093
BENCH_SASL_SSL_PORT ?= 30097
BENCH_CONF    ?=

export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup install run stop test lint unit-test pg-test e2e-test e2e-start e2e-stop java-test go-test ha-test shadow-test conformance compatibility fuzz fuzz-seeds bench clean-data

setup:
	scripts/setup.sh $(PG)

# Upgrade scripts are made of the same files a fresh install runs (one source for each
# object); sql/history holds earlier versions' whole install scripts, installed beside
# them so `ALTER EXTENSION pg_kafka UPDATE` can be tested from each.
UPGRADES := sql/pg_kafka--0.1.0--0.2.0.sql sql/pg_kafka--0.2.0--0.3.0.sql sql/pg_kafka--0.3.0--0.4.0.sql \
	sql/pg_kafka--0.4.0--0.5.0.sql sql/pg_kafka--0.5.0--0.6.0.sql sql/pg_kafka--0.6.0--0.7.0.sql \
	sql/pg_kafka--0.7.0--0.8.0.sql sql/pg_kafka--0.8.0--0.9.0.sql sql/pg_kafka--0.9.0--0.10.0.sql \
	sql/pg_kafka--0.10.0--0.11.0.sql sql/pg_kafka--0.11.0--0.12.0.sql
sql/pg_kafka--0.1.0--0.2.0.sql: sql/security.sql sql/connections.sql
	{ echo "-- pg_kafka 0.1.0 to 0.2.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.2.0--0.3.0.sql: sql/outbox.sql sql/monitor.sql
	{ echo "-- pg_kafka 0.2.0 to 0.3.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.3.0--0.4.0.sql: sql/offsets.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.3.0 to 0.4.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.4.0--0.5.0.sql: sql/offsets_topic.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.4.0 to 0.5.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.5.0--0.6.0.sql: sql/batches.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.5.0 to 0.6.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.6.0--0.7.0.sql: sql/compaction.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.6.0 to 0.7.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.7.0--0.8.0.sql: sql/transactions.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.7.0 to 0.8.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.8.0--0.9.0.sql: sql/row_transactions.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.8.0 to 0.9.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.9.0--0.10.0.sql: sql/replication.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.9.0 to 0.10.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.10.0--0.11.0.sql: sql/in_sync.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.10.0 to 0.11.0, written by make from $^"; cat $^; } > $@
sql/pg_kafka--0.11.0--0.12.0.sql: sql/shadow.sql sql/hardening.sql
	{ echo "-- pg_kafka 0.11.0 to 0.12.0, written by make from $^"; cat $^; } > $@

install: setup $(UPGRADES)
	cargo pgrx install --release --pg-config $(PG_CONFIG)
	cp sql/history/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

run: install
	scripts/cluster.sh start $(PGKAFKA_DATA) $(PGKAFKA_PG_PORT) $(PGKAFKA_PORT)
	@echo
	@echo "pg_kafka is up."
	@echo "  SQL:    psql -h 127.0.0.1 -p $(PGKAFKA_PG_PORT) -U postgres -c 'SELECT * FROM kafka.topics'"
	@echo "  Kafka:  kcat -L -b 127.0.0.1:$(PGKAFKA_PORT)"
	@echo "  Log:    $(PGKAFKA_DATA)/server.log      Stop: make stop"

stop:
	scripts/cluster.sh stop $(PGKAFKA_DATA)

test: setup lint unit-test pg-test e2e-test

# Formatting, clippy on every target, and the layering rule the compiler cannot see: the
# core crate must build without pgrx.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@if cargo tree -p pg_kafka_core -e normal | grep -q pgrx; then \
		echo "pg_kafka_core depends on pgrx: the core must build without Postgres"; exit 1; \
	else echo "lint: pg_kafka_core does not depend on pgrx"; fi

# The core's and the forwarder's tests need no Postgres and never build pgrx; the glue's few
# pure tests do.
unit-test:
	cargo test -p pg_kafka_core
	cargo test -p pg_kafka_shadow
	cargo test -p pg_kafka --lib -- --skip tests::pg_

pg-test:
	mkdir -p $(PGRX_TEST_DATA) && chown postgres:postgres $(PGRX_TEST_DATA)
	cargo pgrx test pg$(PG) --runas postgres --pgdata $(abspath $(PGRX_TEST_DATA))

# Every fuzz target for FUZZ_SECONDS each (libFuzzer, no sanitizer on stable). New inputs
# go to target/fuzz-corpus; the checked-in seeds in fuzz/corpus are read, never written.
# A finding fails the run and leaves its input in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := request record_batch sasl stored_values handler
fuzz: setup
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
	cd fuzz && cargo fuzz build -s none
	@for target in $(FUZZ_TARGETS); do \
		mkdir -p target/fuzz-corpus/$$target; \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		seeds=corpus/$$target; [ "$$target" != handler ] || seeds=corpus/request; \
		if ! (cd fuzz && cargo fuzz run -s none $$target ../target/fuzz-corpus/$$target $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=1 > ../target/fuzz-$$target.log 2>&1); then \
			tail -n 60 target/fuzz-$$target.log; echo "fuzz: $$target found a crash (input in fuzz/artifacts/$$target)"; exit 1; \
		fi; \
		grep -E "DONE|Done" target/fuzz-$$target.log | tail -n 2; \
	done

# Rewrites the seed corpus from the core's sample requests and batches in every codec.
fuzz-seeds:
	PGKAFKA_FUZZ_SEEDS=$(abspath fuzz/corpus) cargo test -p pg_kafka_core -- samples_are_admitted decodes_every_codec

# The end-to-end cluster: the release build on the e2e ports, with SASL and TLS listeners
# beside PLAINTEXT. `make e2e-start` leaves it running (for a client tier run by hand,
# `make java-test` or `make go-test` on a running cluster); `make e2e-stop` stops it.
e2e-start:
	scripts/cluster.sh stop $(E2E_DATA)
	rm -rf $(E2E_DATA)
	scripts/test-certs.sh $(E2E_CERTS) && chown -R postgres:postgres $(E2E_CERTS)
	printf '%s\n' \
		"pg_kafka.listeners = 'PLAINTEXT://127.0.0.1:$(E2E_PORT),SASL_PLAINTEXT://127.0.0.1:$(E2E_SASL_PLAINTEXT_PORT),SASL_SSL://127.0.0.1:$(E2E_SASL_SSL_PORT),SSL://127.0.0.1:$(E2E_SSL_PORT)'" \
		"pg_kafka.ssl_cert_file = '$(abspath $(E2E_CERTS))/server.crt'" \
		"pg_kafka.ssl_key_file = '$(abspath $(E2E_CERTS))/server.key'" \
		"pg_kafka.ssl_ca_file = '$(abspath $(E2E_CERTS))/ca.crt'" \
		"pg_kafka.ssl_client_auth = 'requested'" \
		"pg_kafka.sasl_plain_without_tls = on" \
		"pg_kafka.metrics_listener = '127.0.0.1:$(E2E_METRICS_PORT)'" \
		"pg_kafka.retention_check_interval_ms = 1000" \
		"pg_kafka.default_topic_storage = '$(TOPIC_STORAGE)'" > target/e2e-listeners.conf
	# RUST_BACKTRACE as many environments set it: errors must still reach clients as one line.
	RUST_BACKTRACE=1 PGKAFKA_EXTRA_CONF=target/e2e-listeners.conf scripts/cluster.sh start $(E2E_DATA) $(E2E_PG_PORT) $(E2E_PORT)

e2e-stop:
	scripts/cluster.sh stop $(E2E_DATA)

# Where every end-to-end tier (Rust, Python, Java, Go) finds the cluster.
E2E_ENV = PGKAFKA_E2E_BOOTSTRAP=127.0.0.1:$(E2E_PORT) PGKAFKA_E2E_PG_PORT=$(E2E_PG_PORT) \
	PGKAFKA_E2E_DATA=$(abspath $(E2E_DATA)) PGKAFKA_E2E_CERTS=$(abspath $(E2E_CERTS)) \
	PGKAFKA_E2E_SASL_PLAINTEXT=127.0.0.1:$(E2E_SASL_PLAINTEXT_PORT) PGKAFKA_E2E_SASL_SSL=127.0.0.1:$(E2E_SASL_SSL_PORT) \
	PGKAFKA_E2E_SSL=127.0.0.1:$(E2E_SSL_PORT) PGKAFKA_E2E_EXTRA_CONF=$(abspath target/e2e-listeners.conf) \
	PGKAFKA_E2E_METRICS=127.0.0.1:$(E2E_METRICS_PORT) PATH="$(PG_BIN):$$PATH"

# The client tiers `make e2e-test` runs after the Rust tests, on the same cluster: Kafka's
# Java client, Admin, tools and Streams (tests/java, Maven), and Go's franz-go, sarama and
# kafka-go (tests/go). CI runs them on PostgreSQL 15 only (E2E_CLIENTS= for the others):
# they exercise the protocol, which does not depend on the major.
E2E_CLIENTS ?= java go

# Installs the release build (pg-test installs its own test build first), starts a
# cluster on the e2e ports, runs the client tests, and always stops the cluster; it ends by
# naming the Rust tests that failed, since the end of a CI log is the part that gets read.
e2e-test: install
	$(MAKE) --no-print-directory e2e-start
	{ $(E2E_ENV) cargo test -p pg_kafka_e2e $(E2E_ARGS) --no-fail-fast -- --test-threads=4 --show-output; \
	  echo $$? > target/e2e-rust.status; } 2>&1 | tee target/e2e-rust.log; \
	status=$$(cat target/e2e-rust.status); \
	for tier in $(E2E_CLIENTS); do $(E2E_ENV) scripts/client-tier.sh $$tier || status=1; done; \
	scripts/cluster.sh stop $(E2E_DATA); \
	grep -a -E '^test .* FAILED$$|^error: test failed' target/e2e-rust.log || true; exit $$status

# One client tier alone, on a cluster of its own (or on the running e2e cluster with
# E2E_RUNNING=1). JAVA_TESTS / GO_TESTS pick tests (Surefire's -Dtest, go test -run).
java-test go-test: install
	@if [ -z "$(E2E_RUNNING)" ]; then $(MAKE) --no-print-directory e2e-start; fi
	$(E2E_ENV) scripts/client-tier.sh $(@:-test=); \
	status=$$?; if [ -z "$(E2E_RUNNING)" ]; then scripts/cluster.sh stop $(E2E_DATA); fi; exit $$status

# Failover with Patroni (tests/e2e/tests/ha.rs): three nodes and a local etcd on
# loopback ports (scripts/ha-cluster.sh), an idempotent acks=all producer and a consumer
# group through a kill -9 of the primary, its rejoin, and a switchover. CI runs it on 15.
HA_DIR ?= target/ha$(PG_SUFFIX)
ha-test: setup install
	PGKAFKA_HA_DIR=$(abspath $(HA_DIR)) PATH="$(PG_BIN):$$PATH" \
		cargo test -p pg_kafka_e2e --test ha -- --ignored --nocapture

# Shadow topics (tests/e2e/tests/shadow.rs): the pg_kafka_shadow forwarder between the
# end-to-end cluster and a real Apache Kafka (scripts/kafka-broker.sh, Maven's jars) on
# SHADOW_KAFKA_PORT (and the port after it), through kill -9 of the forwarder and of the
# worker and an outage of Kafka. CI runs it on 15.
SHADOW_KAFKA_PORT ?= 30200
shadow-test: install
	cargo build -p pg_kafka_shadow
	$(MAKE) --no-print-directory e2e-start
	$(E2E_ENV) PGKAFKA_SHADOW_BIN=$(abspath target/debug/pg_kafka_shadow) PGKAFKA_SHADOW_KAFKA_PORT=$(SHADOW_KAFKA_PORT) \
		cargo test -p pg_kafka_e2e --test shadow -- --ignored --nocapture --test-threads=1; \
	status=$$?; scripts/cluster.sh stop $(E2E_DATA); scripts/kafka-broker.sh stop target/shadow-kafka; exit $$status

# Clients' own test suites against pg_kafka, on a cluster of their own whose auto-created
# topics have 4 partitions (the suites' default scenario): librdkafka's (every broker
# test) and franz-go's kgo integration tests, each with an allowlist of skips with reasons
# in tests/conformance/. CONFORMANCE_MODE=quick is the suites' quick mode, what CI runs;
# full (default) is all of it. Then docs/compatibility.md is written anew from these and
# the last e2e-test's results (`make compatibility` alone rewrites it).
CONFORMANCE_DATA    ?= target/conformance-pgdata$(PG_SUFFIX)
CONFORMANCE_PG_PORT ?= 26435
CONFORMANCE_PORT    ?= 30102
CONFORMANCE_MODE    ?= full
conformance: install
	scripts/cluster.sh stop $(CONFORMANCE_DATA)
	rm -rf $(CONFORMANCE_DATA)
	printf '%s\n' "pg_kafka.default_partitions = 4" "pg_kafka.retention_check_interval_ms = 1000" \
		"pg_kafka.default_topic_storage = '$(TOPIC_STORAGE)'" > target/conformance.conf
	PGKAFKA_EXTRA_CONF=target/conformance.conf scripts/cluster.sh start $(CONFORMANCE_DATA) $(CONFORMANCE_PG_PORT) $(CONFORMANCE_PORT)
	status=0; \
	TOPIC_STORAGE=$(TOPIC_STORAGE) scripts/librdkafka-suite.sh 127.0.0.1:$(CONFORMANCE_PORT) $(CONFORMANCE_MODE) || status=1; \
	TOPIC_STORAGE=$(TOPIC_STORAGE) scripts/franz-go-suite.sh 127.0.0.1:$(CONFORMANCE_PORT) $(CONFORMANCE_MODE) || status=1; \
	scripts/cluster.sh stop $(CONFORMANCE_DATA); scripts/compatibility.py; exit $$status

compatibility:
	scripts/compatibility.py

bench: install
	scripts/build-rdkafka-performance.sh target/rdkafka-performance
	cargo build --release -p pg_kafka_shadow
	scripts/cluster.sh stop $(BENCH_DATA)
	rm -rf $(BENCH_DATA)
	scripts/test-certs.sh $(E2E_CERTS) && chown -R postgres:postgres $(E2E_CERTS)
	{ printf '%s\n' \
		"pg_kafka.listeners = 'PLAINTEXT://127.0.0.1:$(BENCH_PORT),SASL_SSL://127.0.0.1:$(BENCH_SASL_SSL_PORT)'" \
		"pg_kafka.ssl_cert_file = '$(abspath $(E2E_CERTS))/server.crt'" \
		"pg_kafka.ssl_key_file = '$(abspath $(E2E_CERTS))/server.key'" \
		"pg_kafka.max_connections = 6000" \
		"pg_kafka.retention_check_interval_ms = 5000"; \
	  if [ -n "$(BENCH_CONF)" ]; then cat $(BENCH_CONF); fi; } > target/bench-extra.conf
	PGKAFKA_EXTRA_CONF=target/bench-extra.conf scripts/cluster.sh start $(BENCH_DATA) $(BENCH_PG_PORT) $(BENCH_PORT)
	PGKAFKA_BENCH_BOOTSTRAP=127.0.0.1:$(BENCH_PORT) PGKAFKA_BENCH_PG_PORT=$(BENCH_PG_PORT) \
	PGKAFKA_BENCH_SASL_SSL=127.0.0.1:$(BENCH_SASL_SSL_PORT) PGKAFKA_BENCH_CA_FILE=$(abspath $(E2E_CERTS))/ca.crt \
	PGKAFKA_BENCH_RDKAFKA_PERFORMANCE=$(abspath target/rdkafka-performance/rdkafka_performance) \
	PGKAFKA_BENCH_SHADOW_BIN=$(abspath target/release/pg_kafka_shadow) \
	$(if $(BENCH_SQL),BENCH_SQL=$(abspath $(BENCH_SQL))) \
	cargo run --release -p pg_kafka_bench; \
	status=$$?; scripts/cluster.sh stop $(BENCH_DATA); exit $$status
