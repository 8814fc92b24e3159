#!/usr/bin/env bash
# Runs one client tier against the running end-to-end cluster (its coordinates in
# PGKAFKA_E2E_*, as `make e2e-test` sets them):
#
#   scripts/client-tier.sh java   # tests/java: Kafka's Java client, Admin, tools, Streams (Maven)
#   scripts/client-tier.sh go     # tests/go: franz-go, sarama, kafka-go (go test)
#
# JAVA_TESTS (Surefire's -Dtest pattern) and GO_TESTS (go test -run) pick some tests.
# Dependencies come from Maven Central and the Go module proxy, pinned in pom.xml and
# go.sum, cached in ~/.m2 and the Go module cache. The JVM's heap is kept small: the
# machine has 2 cores and the cluster runs beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:?usage: client-tier.sh java|go}
: "${PGKAFKA_E2E_BOOTSTRAP:?run through make e2e-test, java-test or go-test}"

case "$tier" in
java)
    command -v mvn >/dev/null || { echo "client-tier: mvn is missing (make setup installs maven)" >&2; exit 1; }
    args=(-B -ntp -f tests/java/pom.xml test)
    [ -z "${JAVA_TESTS:-}" ] || args+=("-Dtest=$JAVA_TESTS" -Dsurefire.failIfNoSpecifiedTests=false)
    echo "client-tier: Java (kafka-clients, kafka-streams, kafka-tools 4.4.0)"
    mvn "${args[@]}"
    ;;
go)
    command -v go >/dev/null || { echo "client-tier: go is missing (make setup installs golang)" >&2; exit 1; }
    echo "client-tier: Go (franz-go, sarama, kafka-go)"
    cd tests/go
    status=0
    go test -count=1 -timeout 15m -v ${GO_TESTS:+-run "$GO_TESTS"} ./... >../../target/go-test.log 2>&1 || status=$?
    cat ../../target/go-test.log
    # One line CI's summary counts: go test prints a line per test.
    passed=$(grep -c -- '^--- PASS' ../../target/go-test.log || true)
    failed=$(grep -c -- '^--- FAIL' ../../target/go-test.log || true)
    echo "go: $passed passed, $failed failed"
    exit "$status"
    ;;
*)
    echo "client-tier: unknown tier $tier (java or go)" >&2
    exit 2
    ;;
esac
