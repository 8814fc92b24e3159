"""kafka-python end to end: an idempotent producer (kafka-python 3.x's default, which
calls InitProducerId first) and a consumer group member that commits, then prints the
committed offsets as JSON.

    python3 group.py BOOTSTRAP TOPIC GROUP COUNT

Exits non-zero if the producer is not idempotent or COUNT messages do not arrive.
"""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main():
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    for i in range(count):
        producer.send(topic, value=f"py{i}".encode(), partition=i % 2)
    producer.flush(30)
    producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=30000,
                             session_timeout_ms=10000, heartbeat_interval_ms=1000)
    values = set()
    for message in consumer:
        values.add(message.value)
        consumer.commit()
        if len(values) == count:
            break
    committed = {p: consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    consumer.close()
    print(json.dumps({"distinct": len(values), "committed": committed}))
    return 0 if len(values) == count else 1


if __name__ == "__main__":
    sys.exit(main())
