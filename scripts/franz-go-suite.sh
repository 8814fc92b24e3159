#!/usr/bin/env bash
# franz-go's own integration tests (package kgo, the franz-go version tests/go pins)
# against a running pg_kafka cluster (`make conformance`).
#
#   scripts/franz-go-suite.sh BOOTSTRAP [quick|full]
#
# The module's source comes from the Go module cache (`go mod download`, through the Go
# module proxy), is copied into target/franz-go-suite and its kgo test binary built there.
# Tests named in tests/conformance/franz-go.skip are skipped, each with its reason.
# `quick` caps the records the ETL tests move (KGO_TEST_RECORDS=50000, CI); `full` moves
# franz-go's default 500,000.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bootstrap=${1:?usage: franz-go-suite.sh BOOTSTRAP [quick|full]}
mode=${2:-full}
work=$repo/target/franz-go-suite

version=$(cd "$repo/tests/go" && go list -m -f '{{.Version}}' github.com/twmb/franz-go)
if [ ! -x "$work/kgo.test" ] || [ "$(cat "$work/version" 2>/dev/null)" != "$version" ]; then
    echo "franz-go-suite: building the kgo tests of franz-go $version"
    source=$(cd "$repo/tests/go" && go mod download -json "github.com/twmb/franz-go@$version" | python3 -c \
        "import json, sys; print(json.load(sys.stdin)['Dir'])")
    rm -rf "$work" && mkdir -p "$work"
    cp -r "$source" "$work/src" && chmod -R u+w "$work/src"
    (cd "$work/src" && go test -c -o "$work/kgo.test" ./pkg/kgo)
    echo "$version" >"$work/version"
fi

# "(rows)" skips apply only to topics in the row layout (TOPIC_STORAGE, rows by default).
skips=$(grep -Ev '^(#|$)' "$repo/tests/conformance/franz-go.skip")
if [ "${TOPIC_STORAGE:-rows}" != rows ]; then
    skips=$(grep -v ' (rows) ' <<<"$skips" || true)
fi
skip=$(awk '{print $1}' <<<"$skips" | paste -sd'|' -)
records=500000
[ "$mode" = quick ] && records=50000
echo "franz-go-suite: $version, $mode mode ($records records), skipping ${skip:-nothing} (tests/conformance/franz-go.skip)"
cd "$work/src/pkg/kgo"
status=0
KGO_SEEDS=$bootstrap KGO_TEST_RF=1 KGO_TEST_RECORDS=$records KGO_LOG_LEVEL=none \
    "$work/kgo.test" -test.count=1 -test.timeout=20m -test.v ${skip:+-test.skip "^($skip)\$"} >"$work/run.log" 2>&1 \
    || status=$?
grep -E '^(--- |FAIL|ok|PASS)' "$work/run.log" || true
passed=$(grep -c -- '^--- PASS' "$work/run.log" || true)
failed=$(grep -c -- '^--- FAIL' "$work/run.log" || true)
skipped=$(grep -c -- '^--- SKIP' "$work/run.log" || true)
echo "franz-go: $passed passed, $failed failed, $skipped skipped"
exit "$status"
