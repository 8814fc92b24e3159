#!/usr/bin/env bash
# librdkafka's own test suite against a running pg_kafka cluster (`make conformance`).
#
#   scripts/librdkafka-suite.sh BOOTSTRAP [quick|full]
#
# Builds the tests/ of the librdkafka that rdkafka-sys vendors (the version Cargo.lock
# pins, from cargo's registry) once into target/librdkafka-suite, then runs its
# test-runner against BOOTSTRAP in parallel: every broker test but those needing no
# broker (-L), socket emulation (-E) or listed in tests/conformance/librdkafka.skip with
# their reason. `quick` is the suite's own quick mode (fewer messages, CI), `full` all of it.
# Kafka's shell tools the suite calls (kafka-topics.sh, kafka-configs.sh, kafka-acls.sh)
# are the main classes of the kafka-tools jar (tests/java's Maven classpath).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bootstrap=${1:?usage: librdkafka-suite.sh BOOTSTRAP [quick|full]}
mode=${2:-full}
work=$repo/target/librdkafka-suite

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# RapidJSON: the suite's statistics tests (0053, 0101, 0110) need it to parse stats.
if ! dpkg-query -W -f='${Status}' rapidjson-dev 2>/dev/null | grep -q "install ok installed"; then
    echo "librdkafka-suite: installing rapidjson-dev"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rapidjson-dev >/dev/null
fi

manifest=$(cd "$repo" && cargo metadata --format-version 1 | python3 -c \
    "import json, sys; print(next(p['manifest_path'] for p in json.load(sys.stdin)['packages'] if p['name'] == 'rdkafka-sys'))")
vendored=$(dirname "$manifest")/librdkafka
version=$(basename "$(dirname "$manifest")")
if [ ! -x "$work/src/tests/test-runner" ] || [ "$(cat "$work/version" 2>/dev/null)" != "$version" ]; then
    echo "librdkafka-suite: building the test suite of $version (about a minute)"
    rm -rf "$work" && mkdir -p "$work"
    cp -r "$vendored" "$work/src"
    (cd "$work/src" && ./configure --disable-gssapi >"$work/configure.log" 2>&1 \
        && make -j"$(nproc)" libs >"$work/build.log" 2>&1 \
        && make -j"$(nproc)" -C tests build >>"$work/build.log" 2>&1) \
        || { tail -n 40 "$work/build.log" "$work/configure.log" 2>/dev/null; exit 1; }
    echo "$version" >"$work/version"
fi

# Kafka's bin/ scripts, as the Java main classes behind them.
classpath=$work/tools.classpath
if [ ! -s "$classpath" ]; then
    mvn -B -q -ntp -f "$repo/tests/java/pom.xml" dependency:build-classpath -Dmdep.includeScope=runtime \
        -Dmdep.outputFile="$classpath" >/dev/null
fi
mkdir -p "$work/kafka/bin"
for tool in kafka-topics:org.apache.kafka.tools.TopicCommand kafka-configs:org.apache.kafka.tools.ConfigCommand \
            kafka-acls:org.apache.kafka.tools.AclCommand; do
    printf '#!/bin/sh\nexec java -Xmx256m -cp "$(cat %s)" %s "$@"\n' "$classpath" "${tool#*:}" >"$work/kafka/bin/${tool%%:*}.sh"
    chmod +x "$work/kafka/bin/${tool%%:*}.sh"
done

# A skip marked "(full)" applies to full mode only, "(rows)" to the row layout only,
# "(full,rows)" to both at once.
skips=$(grep -Ev '^(#|$)' "$repo/tests/conformance/librdkafka.skip" \
    | awk -v mode="$mode" -v storage="${TOPIC_STORAGE:-rows}" \
        '{ tag = ($2 ~ /^\(/) ? $2 : "" }
         (tag !~ /full/ || mode == "full") && (tag !~ /rows/ || storage == "rows") {print $1}' | paste -sd, -)
args=(-L -E -p4)
[ "$mode" = quick ] && args+=(-Q)
cd "$work/src/tests"
printf '%s\n' "metadata.broker.list=$bootstrap" "test.topic.random=true" >test.conf
echo "librdkafka-suite: $version, $mode mode, skipping $skips (tests/conformance/librdkafka.skip)"
status=0
env LD_LIBRARY_PATH=../src:../src-cpp TEST_KAFKA_VERSION=4.0.0 KAFKA_PATH="$work/kafka" BROKERS="$bootstrap" \
    TESTS_SKIP="$skips" ./test-runner "${args[@]}" 2>&1 | tee "$work/run.log" || status=$?
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$work/run.log" | grep -E '^\| [0-9]{4}')
passed=$(grep -c '| *PASSED |' <<<"$summary" || true)
failed=$(grep -c '| *FAILED |' <<<"$summary" || true)
skipped=$(grep -c '| *SKIPPED |' <<<"$summary" || true)
echo "librdkafka: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] || status=1
exit "$status"
