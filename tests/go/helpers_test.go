// Package clienttests drives a running pg_kafka cluster with Go's Kafka clients: franz-go,
// IBM/sarama and segmentio/kafka-go. `make go-test` (which `make e2e-test` runs) passes the
// cluster's coordinates in PGKAFKA_E2E_BOOTSTRAP and PGKAFKA_E2E_PG_PORT.
package clienttests

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func bootstrap(t *testing.T) string {
	t.Helper()
	return env(t, "PGKAFKA_E2E_BOOTSTRAP")
}

func env(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: run these tests through `make go-test`", name)
	}
	return value
}

// uniqueTopic names a topic no other test, nor an earlier run on the same cluster, uses.
func uniqueTopic(prefix string) string {
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		panic(err)
	}
	return "go-" + prefix + "-" + hex.EncodeToString(suffix)
}

// psql runs SQL as the superuser on the test cluster and returns its trimmed output.
func psql(t *testing.T, sql string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres",
		"-d", "postgres", "-p", env(t, "PGKAFKA_E2E_PG_PORT"), "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}
