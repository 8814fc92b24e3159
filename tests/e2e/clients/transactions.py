#!/usr/bin/env python3
"""One transactional scenario run by a Python client, for the end-to-end tests.

    transactions.py CLIENT BOOTSTRAP TOPIC TRANSACTIONAL_ID GROUP

CLIENT is confluent-kafka ("ck"), kafka-python ("kp") or aiokafka ("aio"). On partition 0
of TOPIC (a batch-layout topic) the client commits a0..a9 with GROUP's offset 5, aborts
b0..b4 with GROUP's offset 99, commits c0..c2 with GROUP's offset 7; then reads the
topic back read_committed and read_uncommitted with the same library. Prints one JSON
object: {"committed": [...], "uncommitted": [...]} or {"error": "..."}; never raises.
"""
import asyncio
import json
import sys
import time

# (prefix, count, offset sent with it, commit?)
ROUNDS = [("a", 10, 5, True), ("b", 5, 99, False), ("c", 3, 7, True)]
READ_SECONDS = 20


def expected_count(committed):
    return sum(n for _, n, _, commit in ROUNDS if commit or not committed)


def values(prefix, count):
    return [f"{prefix}{i}" for i in range(count)]


def ck(bootstrap, topic, txn_id, group):
    from confluent_kafka import Consumer, Producer, TopicPartition
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5})
    producer.init_transactions(30)
    # The group's metadata a consume-transform-produce loop would pass; no member yet.
    offsets_owner = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    for prefix, count, offset, commit in ROUNDS:
        producer.begin_transaction()
        for value in values(prefix, count):
            producer.produce(topic, value=value.encode(), partition=0)
        producer.flush(30)
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, offset)], offsets_owner.consumer_group_metadata(), 30)
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)
    offsets_owner.close()

    def read(isolation):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-{isolation}", "isolation.level": isolation,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        read, deadline = [], time.time() + READ_SECONDS
        while time.time() < deadline and len(read) < expected_count(isolation == "read_committed"):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                read.append(message.value().decode())
        time.sleep(1)  # anything more (an aborted record) would arrive now
        message = consumer.poll(0.5)
        while message is not None:
            if not message.error():
                read.append(message.value().decode())
            message = consumer.poll(0.2)
        consumer.close()
        return read

    return {"committed": read("read_committed"), "uncommitted": read("read_uncommitted")}


def kp(bootstrap, topic, txn_id, group):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id, linger_ms=5)
    producer.init_transactions()
    for prefix, count, offset, commit in ROUNDS:
        producer.begin_transaction()
        for value in values(prefix, count):
            producer.send(topic, value=value.encode(), partition=0)
        producer.flush()
        producer.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(offset, "", -1)}, group)
        producer.commit_transaction() if commit else producer.abort_transaction()
    producer.close()

    def read(isolation):
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                                 consumer_timeout_ms=3000)
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        read = [message.value.decode() for message in consumer]
        consumer.close()
        return read

    return {"committed": read("read_committed"), "uncommitted": read("read_uncommitted")}


async def aio_scenario(bootstrap, topic, txn_id, group):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id, linger_ms=5)
    await producer.start()
    try:
        for prefix, count, offset, commit in ROUNDS:
            await producer.begin_transaction()
            for value in values(prefix, count):
                await producer.send(topic, value=value.encode(), partition=0)
            await producer.flush()
            await producer.send_offsets_to_transaction({TopicPartition(topic, 0): offset}, group)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()

    async def read(isolation):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            read, deadline = [], time.time() + READ_SECONDS
            while time.time() < deadline:
                batches = await consumer.getmany(partition, timeout_ms=500)
                read += [m.value.decode() for m in batches.get(partition, [])]
                if len(read) >= expected_count(isolation == "read_committed") and not batches:
                    break
            return read
        finally:
            await consumer.stop()

    return {"committed": await read("read_committed"), "uncommitted": await read("read_uncommitted")}


def aio(bootstrap, topic, txn_id, group):
    return asyncio.run(aio_scenario(bootstrap, topic, txn_id, group))


if __name__ == "__main__":
    client, bootstrap, topic, txn_id, group = sys.argv[1:6]
    try:
        answer = {"ck": ck, "kp": kp, "aio": aio}[client](bootstrap, topic, txn_id, group)
    except Exception as error:  # an answer the test checks, with the client's own words
        answer = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(answer))
