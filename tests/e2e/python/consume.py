"""Consumes a partition with kafka-python (an implementation independent of librdkafka)
and prints one JSON line per message: offset, key, value and headers as hex, timestamp.

    python3 consume.py BOOTSTRAP TOPIC PARTITION COUNT

Exits non-zero if COUNT messages do not arrive within 30 s.
"""
import json
import sys

from kafka import KafkaConsumer, TopicPartition


def main():
    bootstrap, topic, partition, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             consumer_timeout_ms=30000, auto_offset_reset="earliest")
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen = 0
    for message in consumer:
        print(json.dumps({
            "offset": message.offset,
            "key": message.key.hex() if message.key is not None else None,
            "value": message.value.hex(),
            "headers": [[k, v.hex()] for k, v in message.headers],
            "timestamp": message.timestamp,
        }))
        seen += 1
        if seen == count:
            return 0
    print(f"only {seen} of {count} messages arrived", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
