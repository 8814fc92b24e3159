#!/usr/bin/env bash
# Starts or stops a Postgres cluster with pg_kafka preloaded, owned by the postgres user.
#
#   scripts/cluster.sh start DATADIR PG_PORT KAFKA_PORT   # creates the cluster if needed
#   scripts/cluster.sh stop  DATADIR
#
# `start` returns once this cluster's worker listens on the Kafka port (not merely once
# something answers there), and fails if the worker cannot listen. PGKAFKA_EXTRA_CONF names a file of
# settings appended to the cluster's configuration (used by `make bench`). Used by `make run` and by
# `make test` (on other ports), so both run the same set-up.
set -euo pipefail

# PG_BIN: the server binaries (the Makefile exports it for `PG=<major>`); Debian's 15 by default.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: cluster.sh start|stop DATADIR [PG_PORT KAFKA_PORT]}
datadir=${2:?datadir required}
mkdir -p "$datadir"
datadir=$(cd "$datadir" && pwd)

# as_postgres, give_to_postgres
source "$(dirname "$0")/postgres-user.sh"

# Whether something accepts connections on 127.0.0.1:$1 (bounded: a listener that never
# accepts would otherwise hold a connect for minutes once its backlog is full).
port_answers() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Waits until this cluster's worker listens on the Kafka port: its "listening" line in the
# log written since byte $2 of server.log, and the port answering. Another process holding
# the port would answer too, while the worker logs "cannot start the Kafka listeners" and
# tries again every 5 s: a port held for a moment (a client's outgoing connection given
# it as its local port, were a port in Linux's ephemeral range) is waited out; a
# fourth refusal fails, with the log's lines.
wait_for_worker() {
    local port=$1 from=$2 written
    for _ in $(seq 1 120); do
        written=$(tail -c +"$((from + 1))" "$datadir/server.log" 2>/dev/null || true)
        if [ "$(grep -c "pg_kafka: cannot start the Kafka listeners" <<<"$written")" -ge 4 ]; then
            echo "cluster: the pg_kafka worker cannot listen on its port (in use by another process?); last server log lines:" >&2
            grep "pg_kafka: cannot start the Kafka listeners" <<<"$written" | tail -n 3 >&2
            return 1
        fi
        if grep -q "pg_kafka: listening for Kafka clients" <<<"$written" && port_answers "$port"; then
            return 0
        fi
        sleep 0.5
    done
    echo "cluster: the pg_kafka worker did not open Kafka port $port; last server log lines:" >&2
    tail -n 30 "$datadir/server.log" >&2 || true
    return 1
}

# An already running cluster: 0 when its worker (a child of the postmaster) holds the
# port, 2 when another process does (seen with ss, as root), 1 when nothing answers yet.
# Without ss or its view of the listener's process, the port answering is taken as ours.
worker_holds_port() {
    local port=$1 postmaster pids pid
    postmaster=$(head -n 1 "$datadir/postmaster.pid")
    if command -v ss >/dev/null; then
        pids=$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
        if [ -n "$pids" ]; then
            for pid in $pids; do
                [ "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" = "$postmaster" ] && return 0
            done
            echo "cluster: Kafka port $port is held by another process (pid $pids), not this cluster's worker" >&2
            return 2
        fi
    fi
    port_answers "$port" || return 1
}

case "$cmd" in
start)
    pg_port=${3:?pg port required}
    kafka_port=${4:?kafka port required}
    give_to_postgres "$datadir"
    if [ ! -f "$datadir/PG_VERSION" ]; then
        as_postgres "$PG_BIN/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 >/dev/null
        echo "include_if_exists = 'pg_kafka.conf'" >> "$datadir/postgresql.conf"
    fi
    cat > "$datadir/pg_kafka.conf" <<CONF
# written by scripts/cluster.sh on every start
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp'
shared_preload_libraries = 'pg_kafka'
pg_kafka.host = '127.0.0.1'
pg_kafka.port = $kafka_port
CONF
    # Extra settings (a tuning file, say): PGKAFKA_EXTRA_CONF=tuning/postgresql.conf.sample
    if [ -n "${PGKAFKA_EXTRA_CONF:-}" ]; then
        { echo "# from $PGKAFKA_EXTRA_CONF"; cat "$PGKAFKA_EXTRA_CONF"; } >> "$datadir/pg_kafka.conf"
    fi
    chown postgres:postgres "$datadir/pg_kafka.conf"
    if as_postgres "$PG_BIN/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        echo "cluster: already running in $datadir"
        for _ in $(seq 1 20); do
            held=0
            worker_holds_port "$kafka_port" || held=$?
            case $held in 0) exit 0 ;; 2) exit 1 ;; esac
            sleep 0.5
        done
        echo "cluster: nothing listens on Kafka port $kafka_port; last server log lines:" >&2
        tail -n 30 "$datadir/server.log" >&2 || true
        exit 1
    else
        log_bytes=$(stat -c %s "$datadir/server.log" 2>/dev/null || echo 0)
        as_postgres "$PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 start >/dev/null
        wait_for_worker "$kafka_port" "$log_bytes"
    fi
    ;;
stop)
    if [ -f "$datadir/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null || true
    fi
    ;;
*)
    echo "usage: cluster.sh start|stop DATADIR [PG_PORT KAFKA_PORT]" >&2
    exit 2
    ;;
esac
