#!/usr/bin/env bash
# Three Postgres nodes with pg_kafka, managed by Patroni (Debian's `patroni`) over a local
# etcd (`etcd-server`), on loopback ports: the set-up docs/deployment.md describes, on one
# machine. `make ha-test` drives it; it is also a way to try failover by hand.
#
#   scripts/ha-cluster.sh start DIR         # etcd and nodes 1-3; returns once node 1 leads and
#                                           # 2 and 3 stream from it, every worker listening
#   scripts/ha-cluster.sh stop DIR          # everything, and nothing left running
#   scripts/ha-cluster.sh kill DIR N        # node N dies as a machine dies: kill -9 of its
#                                           # Patroni, its postmaster and every child
#   scripts/ha-cluster.sh start-node DIR N  # node N's Patroni again: it rejoins as a standby
#                                           # (pg_rewind when its timeline diverged)
#   scripts/ha-cluster.sh ports N           # "PG_PORT KAFKA_PORT REST_PORT" of node N
#
# Node N: Postgres on 2546N, Kafka on 2912N, Patroni's REST API on 2801N, rack rack-N;
# etcd on 22379/22380. All below Linux's ephemeral range, so no client connection holds them.
# Patroni runs with synchronous_mode: a commit waits for one synchronous standby, and only
# that standby may be promoted, so nothing acknowledged with acks=all is lost in a failover.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ETCD_CLIENT=22379
ETCD_PEER=22380
CLUSTER_NODES="1:rack-1/node1@127.0.0.1:29121,2:rack-2/node2@127.0.0.1:29122,3:rack-3/node3@127.0.0.1:29123"
# Patroni's leader key lives this long without renewal: a dead primary is replaced after
# about this many seconds (Patroni's default is 30).
HA_TTL=${HA_TTL:-10}

usage() {
    echo "usage: ha-cluster.sh start|stop DIR | kill|start-node DIR N | ports N" >&2
    exit 2
}

pg_port() { echo $((25460 + $1)); }
kafka_port() { echo $((29120 + $1)); }
rest_port() { echo $((28010 + $1)); }

# as_postgres, give_to_postgres
source "$(dirname "$0")/postgres-user.sh"

# Polls "$@" every 0.5 s for up to $1 seconds.
wait_until() {
    local seconds=$1
    shift
    for _ in $(seq 1 $((seconds * 2))); do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}

# Patroni's health endpoints answer 200 only on a node in that role.
rest_is() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(rest_port "$1")/$2" | grep -q '^200$'
}

a_standby_is_synchronous() { rest_is 2 sync || rest_is 3 sync; }

etcd_healthy() {
    curl -s --max-time 2 "http://127.0.0.1:$ETCD_CLIENT/health" | grep -q '"health":"true"'
}

# The node's worker has logged that it listens, and its port answers.
worker_listens() {
    grep -qs "pg_kafka: listening for Kafka clients" "$dir/node$1/server.log" &&
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(kafka_port "$1")" 2>/dev/null
}

start_etcd() {
    mkdir -p "$dir/etcd"
    give_to_postgres "$dir/etcd"
    as_postgres setsid etcd --name pg_kafka_ha --data-dir "$dir/etcd/data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "pg_kafka_ha=http://127.0.0.1:$ETCD_PEER" >"$dir/etcd/etcd.log" 2>&1 </dev/null &
    wait_until 30 etcd_healthy || {
        echo "ha-cluster: etcd did not become healthy; its log:" >&2
        tail -n 20 "$dir/etcd/etcd.log" >&2
        return 1
    }
}

write_patroni_config() {
    local n=$1 node=$dir/node$1
    mkdir -p "$node"
    give_to_postgres "$node"
    cat >"$node/patroni.yml" <<YAML
# written by scripts/ha-cluster.sh
scope: pg_kafka_ha
name: node$n
log:
  dir: $node
  level: INFO
restapi:
  listen: 127.0.0.1:$(rest_port "$n")
  connect_address: 127.0.0.1:$(rest_port "$n")
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT
bootstrap:
  dcs:
    ttl: $HA_TTL
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - auth: trust
postgresql:
  listen: 127.0.0.1:$(pg_port "$n")
  connect_address: 127.0.0.1:$(pg_port "$n")
  data_dir: $node/data
  bin_dir: $PG_BIN
  pgpass: $node/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: /tmp
    logging_collector: 'on'
    log_directory: $node
    log_filename: server.log
    shared_preload_libraries: pg_kafka
    pg_kafka.host: 127.0.0.1
    pg_kafka.port: $(kafka_port "$n")
    pg_kafka.node_id: $n
    pg_kafka.cluster_nodes: '$CLUSTER_NODES'
YAML
    chown postgres:postgres "$node/patroni.yml"
}

start_node() {
    local n=$1 node=$dir/node$1
    [ -f "$node/patroni.yml" ] || write_patroni_config "$n"
    as_postgres setsid patroni "$node/patroni.yml" >>"$node/patroni.out" 2>&1 </dev/null &
}

# The [p] keeps pgrep from matching a shell whose command line holds the pattern.
patroni_running() { pgrep -f "[p]atroni $dir/node$1/patroni.yml" >/dev/null; }
patroni_gone() { ! patroni_running "$1"; }

# Every pid of node N: Patroni, the postmaster and the postmaster's children.
node_pids() {
    local node=$dir/node$1 postmaster
    pgrep -f "[p]atroni $node/patroni.yml" || true
    if [ -f "$node/data/postmaster.pid" ]; then
        postmaster=$(head -n 1 "$node/data/postmaster.pid")
        if kill -0 "$postmaster" 2>/dev/null; then
            echo "$postmaster"
            pgrep -P "$postmaster" || true
        fi
    fi
}

kill_node() {
    local pids
    pids=$(node_pids "$1")
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    wait_until 10 patroni_gone "$1"
}

cmd=${1:-}
case "$cmd" in
ports)
    n=${2:?node required}
    echo "$(pg_port "$n") $(kafka_port "$n") $(rest_port "$n")"
    exit 0
    ;;
start | stop | kill | start-node) ;;
*) usage ;;
esac
dir=${2:?DIR required}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case "$cmd" in
start)
    give_to_postgres "$dir"
    start_etcd
    start_node 1
    wait_until 90 rest_is 1 primary || {
        echo "ha-cluster: node 1 did not become the primary; its Patroni log:" >&2
        tail -n 30 "$dir/node1/patroni.log" "$dir/node1/patroni.out" >&2 || true
        exit 1
    }
    start_node 2
    start_node 3
    for n in 2 3; do
        wait_until 120 rest_is "$n" replica || {
            echo "ha-cluster: node $n did not become a streaming standby; its Patroni log:" >&2
            tail -n 30 "$dir/node$n/patroni.log" "$dir/node$n/patroni.out" >&2 || true
            exit 1
        }
    done
    wait_until 60 a_standby_is_synchronous || {
        echo "ha-cluster: no standby became synchronous" >&2
        exit 1
    }
    for n in 1 2 3; do
        wait_until 60 worker_listens "$n" || {
            echo "ha-cluster: node $n's pg_kafka worker does not listen; its server log:" >&2
            tail -n 30 "$dir/node$n/server.log" >&2 || true
            exit 1
        }
    done
    ;;
kill)
    kill_node "${3:?node required}"
    ;;
start-node)
    start_node "${3:?node required}"
    ;;
stop)
    for n in 1 2 3; do
        pkill -TERM -f "[p]atroni $dir/node$n/patroni.yml" 2>/dev/null || true
    done
    for n in 1 2 3; do
        wait_until 30 patroni_gone "$n" || kill_node "$n" || true
        # Patroni stops its Postgres as it exits; a postmaster left behind is stopped here.
        [ ! -f "$dir/node$n/data/postmaster.pid" ] ||
            as_postgres "$PG_BIN/pg_ctl" -D "$dir/node$n/data" -m immediate -w stop >/dev/null 2>&1 || true
    done
    pkill -f "[e]tcd --name pg_kafka_ha --data-dir $dir/etcd/data" 2>/dev/null || true
    ;;
esac
