#!/usr/bin/env bash
# Apache Kafka itself, one KRaft node (broker and controller) on this machine, from the
# Maven jars bench/kafka/pom.xml pins: what `make bench` measures pg_kafka against.
#
#   scripts/kafka-broker.sh start DIR PORT [fsync]   fresh log dir in DIR, listener on PORT
#                                                    (controller on PORT+1); "fsync" adds
#                                                    log.flush.interval.messages=1: an fsync
#                                                    per append, pg_kafka's durability with
#                                                    synchronous_commit = on
#   scripts/kafka-broker.sh stop DIR
#   scripts/kafka-broker.sh resume DIR               starts again the broker `start` made in
#                                                    DIR, its data kept (an outage, in tests)
#
# KAFKA_HEAP (1g) sets the JVM's heap.
#
# The broker runs as the invoking user with Kafka's defaults otherwise (replication 1 for
# its internal topics: there is one node). Its output is DIR/kafka.out.
set -euo pipefail
cd "$(dirname "$0")/.."

classpath_file=target/kafka-classpath.txt
if [ ! -s "$classpath_file" ] || [ bench/kafka/pom.xml -nt "$classpath_file" ]; then
    echo "kafka-broker: resolving Apache Kafka's jars (bench/kafka/pom.xml)"
    (cd bench/kafka && mvn -q -B dependency:build-classpath -Dmdep.outputFile="$PWD/../../$classpath_file")
fi
classpath=$(cat "$classpath_file")

command=${1:?start, stop or resume}
dir=${2:?a directory}
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac

stop() {
    if [ -f "$dir/kafka.pid" ]; then
        pid=$(cat "$dir/kafka.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/kafka.pid"
    fi
}

# Starts the broker of DIR and waits for its listener on PORT.
launch() {
    local port=$1 durability=$2
    nohup java -Xms"${KAFKA_HEAP:-1g}" -Xmx"${KAFKA_HEAP:-1g}" -XX:+UseG1GC -cp "$classpath" kafka.Kafka "$dir/server.properties" >> "$dir/kafka.out" 2>&1 &
    echo $! > "$dir/kafka.pid"
    for _ in $(seq 1 150); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
            echo "kafka-broker: Apache Kafka listening on 127.0.0.1:$port${durability:+ ($durability)}"
            return 0
        fi
        kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null || break
        sleep 0.2
    done
    echo "kafka-broker: Apache Kafka did not start; $dir/kafka.out:" >&2
    tail -30 "$dir/kafka.out" >&2
    exit 1
}

case "$command" in
    stop)
        stop
        ;;
    start)
        port=${3:?a port}
        durability=${4:-}
        stop
        rm -rf "$dir"
        mkdir -p "$dir/logs"
        cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/logs
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
        if [ "$durability" = fsync ]; then
            echo "log.flush.interval.messages=1" >> "$dir/server.properties"
        fi
        cluster_id=$(java -cp "$classpath" kafka.tools.StorageTool random-uuid)
        java -cp "$classpath" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" > "$dir/format.out"
        launch "$port" "$durability"
        ;;
    resume)
        stop
        port=$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1://p' "$dir/server.properties")
        launch "$port" ""
        ;;
    *)
        echo "usage: $0 start DIR PORT [fsync] | stop DIR | resume DIR" >&2
        exit 2
        ;;
esac
