#!/usr/bin/env python3
"""Kafka clients over SASL and TLS for the security end-to-end tests.

    secure.py COMMAND CONFIG_JSON [ARGS...]

CONFIG_JSON holds librdkafka settings (confluent-kafka) or kafka-python keyword arguments
(kp-* commands). Prints one JSON object with what happened; never raises (a client
error is an answer the test checks).
"""
import json
import sys
import time


def ck_produce(conf, topic, count, spread_seconds="0"):
    """Produces `count` messages, spread over `spread_seconds` (one producer, one connection)."""
    from confluent_kafka import Producer
    errors = []
    producer = Producer({**conf, "acks": "all", "linger.ms": 5, "message.timeout.ms": 10000})
    for i in range(int(count)):
        producer.produce(topic, value=f"m{i}".encode(), on_delivery=lambda err, msg: err and errors.append(str(err)))
        if float(spread_seconds) > 0:
            producer.poll(0)
            time.sleep(float(spread_seconds) / int(count))
    left = producer.flush(15)
    return {"errors": sorted(set(errors)), "undelivered": left, "delivered": int(count) - len(errors) - left}


def ck_consume(conf, topic, count):
    from confluent_kafka import Consumer
    consumer = Consumer({**conf, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    errors, values = [], []
    consumer.subscribe([topic], on_assign=lambda c, parts: None)
    deadline = time.time() + 20
    while time.time() < deadline and len(values) < int(count) and not errors:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            errors.append(message.error().name())
            continue
        values.append(message.value().decode())
    if values:
        consumer.commit(asynchronous=False)
    consumer.close()
    return {"values": values, "errors": errors}


def ck_metadata(conf):
    from confluent_kafka.admin import AdminClient
    errors = []  # authentication failures arrive through the error callback
    admin = AdminClient({**conf, "error_cb": lambda e: errors.append(str(e))})
    try:
        metadata = admin.list_topics(timeout=10)
        return {"topics": sorted(metadata.topics), "brokers": [f"{b.host}:{b.port}" for b in metadata.brokers.values()]}
    except Exception as e:  # KafkaException carries the client-visible error
        admin.poll(1)
        return {"error": " | ".join(errors + [str(e)])}


def ck_delete_topic(conf, topic):
    from confluent_kafka.admin import AdminClient
    try:
        admin = AdminClient(conf)
        admin.delete_topics([topic], operation_timeout=10)[topic].result(15)
        return {"deleted": True}
    except Exception as e:
        return {"error": str(e)}


def ck_acls(conf, principal, prefix):
    """Creates a prefixed and a literal ACL, describes them, deletes them."""
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType)
    admin = AdminClient(conf)
    bindings = [
        AclBinding(ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, principal, "*", AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, prefix + "group", ResourcePatternType.LITERAL, principal, "*", AclOperation.READ,
                   AclPermissionType.ALLOW),
    ]
    try:
        for future in admin.create_acls(bindings, request_timeout=10).values():
            future.result(15)
        every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None, AclOperation.ANY,
                                 AclPermissionType.ANY)
        described = admin.describe_acls(every, request_timeout=10).result(15)
        deleted = []
        for future in admin.delete_acls([every], request_timeout=10).values():
            deleted += future.result(15)
        after = admin.describe_acls(every, request_timeout=10).result(15)
        show = lambda acls: sorted(f"{a.restype.name}:{a.name}:{a.resource_pattern_type.name}:{a.operation.name}" for a in acls)
        return {"described": show(described), "deleted": show(deleted), "after": show(after)}
    except Exception as e:
        return {"error": str(e)}


def kp_produce(conf, topic, count):
    from kafka import KafkaProducer
    try:
        producer = KafkaProducer(**conf, acks="all", request_timeout_ms=10000)
        for future in [producer.send(topic, f"k{i}".encode()) for i in range(int(count))]:
            future.get(timeout=15)
        producer.close()
        return {"delivered": int(count)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def ck_hold(conf, seconds):
    """Connects, then keeps the connection open for `seconds`."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({**conf, "client.id": "sec-holder"})
    admin.list_topics(timeout=10)
    print(json.dumps({"connected": True}), flush=True)
    time.sleep(float(seconds))
    return {"held": True}


def raw_scram_expire(conf, user, password):
    """SCRAM-SHA-256 by hand (SaslHandshake v1, SaslAuthenticate v1), then waits out the
    session lifetime the broker gave and sends Metadata: the broker must close."""
    import base64, hashlib, hmac, os, socket, struct
    host, port = conf["bootstrap.servers"].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)

    def send(api, version, correlation, body):
        frame = struct.pack(">hhih", api, version, correlation, 4) + b"test" + body
        sock.sendall(struct.pack(">i", len(frame)) + frame)

    def read():
        size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
        return sock.recv(size, socket.MSG_WAITALL)

    def authenticate(correlation, token):
        send(36, 1, correlation, struct.pack(">i", len(token)) + token)
        body = read()[4:]
        error, message_len = struct.unpack(">hh", body[:4])
        at = 4 + max(message_len, 0)
        length = struct.unpack(">i", body[at:at + 4])[0]
        token = body[at + 4:at + 4 + length]
        lifetime = struct.unpack(">q", body[at + 4 + length:at + 12 + length])[0]
        return error, token, lifetime

    mechanism = b"SCRAM-SHA-256"
    send(17, 1, 1, struct.pack(">h", len(mechanism)) + mechanism)
    read()
    bare = f"n={user},r={base64.b64encode(os.urandom(12)).decode()}"
    _, server_first, _ = authenticate(2, ("n,," + bare).encode())
    fields = dict(f.split("=", 1) for f in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without_proof = "c=biws,r=" + fields["r"]
    auth_message = f"{bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    error, _, lifetime = authenticate(3, f"{without_proof},p={proof}".encode())
    if error or lifetime <= 0:
        return {"error": error, "lifetime": lifetime}
    send(3, 1, 4, struct.pack(">i", 0))  # Metadata v1, no topics: answered while valid
    answered_before = len(read()) > 0
    time.sleep(lifetime / 1000 + 0.5)
    send(3, 1, 5, struct.pack(">i", 0))
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    return {"lifetime": lifetime, "answered_before": answered_before, "closed_after": closed}


COMMANDS = {"raw-scram-expire": raw_scram_expire, "ck-hold": ck_hold, "ck-produce": ck_produce, "ck-consume": ck_consume, "ck-metadata": ck_metadata, "ck-delete-topic": ck_delete_topic,
            "ck-acls": ck_acls, "kp-produce": kp_produce}

if __name__ == "__main__":
    command, conf, args = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    print(json.dumps(COMMANDS[command](conf, *args)))
