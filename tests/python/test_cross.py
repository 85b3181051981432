#!/usr/bin/env python3
"""MQTT <-> AMQP through the shared routing core, with the clients people actually use:
paho-mqtt on the device side, pika on the service side.

Usage: python3 tests/python/test_cross.py AMQP_HOST:PORT MQTT_HOST:PORT

Run by tests/cross_protocol.rs, which starts the broker and enforces an overall timeout. Exits 0
when every check passes; otherwise prints each failing check and exits 1.

The mapping under test (RabbitMQ's rules): an MQTT topic is a routing key on amq.topic
with '/' -> '.' (and '+' -> '*' in filters); payload bytes pass unchanged; QoS 1 <-> delivery_mode
2, QoS 0 <-> delivery_mode 1; MQTT 5 User-Property <-> headers, Content-Type <-> content_type,
Correlation-Data <-> correlation_id, Response-Topic <-> header x-reply-to-topic (as a routing
key), Message-Expiry (s) <-> expiration (ms).

Names are unique per run (the fixed `sensors/kitchen/temp` and `cmd/device42` topics carry a
per-run tag in the payload, and anything else is skipped), queues are exclusive, so a shared
broker is left clean.
"""

import sys
import time
import uuid

import pika

from test_paho import (  # noqa: I001 - sibling script
    STEP,
    V311,
    V5,
    VERSION_NAMES,
    Conn,
    parse_addr,
    publish_properties,
    run_checks,
)

BULK = 10_000


def amqp_connect(addr):
    host, port = addr
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host,
        port=port,
        virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        socket_timeout=STEP,
        stack_timeout=15,
        blocked_connection_timeout=15,
        connection_attempts=1,
        heartbeat=0,
    ))


def bound_queue(channel, binding_key):
    name = "warren-test.cross.%s" % uuid.uuid4().hex[:12]
    channel.queue_declare(queue=name, exclusive=True)
    channel.queue_bind(queue=name, exchange="amq.topic", routing_key=binding_key)
    return name


def consume_tagged(channel, queue, tag):
    """The first delivery on `queue` whose body contains `tag` (others are another run's)."""
    deadline = time.monotonic() + STEP
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            channel.connection.sleep(0.02)
            continue
        if tag.encode() in body:
            return method, properties, body
    raise AssertionError("no message tagged %s on %s within %ss" % (tag, queue, STEP))


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def recv_tagged(conn, tag):
    deadline = time.monotonic() + STEP
    while True:
        message = conn.recv(timeout=max(0.1, deadline - time.monotonic()))
        if tag.encode() in message.payload:
            return message


# --- (a) MQTT -> AMQP ----------------------------------------------------------------------------


def check_mqtt_v311_publish_reaches_amqp_binding(amqp_addr, mqtt_addr):
    """paho 3.1.1 publishes to sensors/kitchen/temp (QoS 1 and QoS 0); a pika queue bound with
    sensors.*.temp gets the exact bytes, routing key sensors.kitchen.temp, delivery_mode 2 / 1."""
    tag = uuid.uuid4().hex
    connection = amqp_connect(amqp_addr)
    publisher = Conn(mqtt_addr, V311)
    try:
        channel = connection.channel()
        queue = bound_queue(channel, "sensors.*.temp")
        for qos, delivery_mode in ((1, 2), (0, 1)):
            payload = b"\x00\xff\x01 binary + " + tag.encode() + (b" qos%d" % qos)
            publisher.publish("sensors/kitchen/temp", payload, qos=qos)
            method, properties, body = consume_tagged(channel, queue, tag)
            assert body == payload, "payload bytes changed: %r" % body
            assert method.exchange == "amq.topic", method.exchange
            assert method.routing_key == "sensors.kitchen.temp", method.routing_key
            assert properties.delivery_mode == delivery_mode, \
                "QoS %d -> delivery_mode %r, expected %d" % (qos, properties.delivery_mode,
                                                             delivery_mode)
    finally:
        publisher.close()
        connection.close()


def check_mqtt_v5_properties_reach_amqp(amqp_addr, mqtt_addr):
    """paho 5.0 publishes to sensors/kitchen/temp at QoS 1 with user properties (and content
    type, correlation data, response topic, expiry): pika gets the exact payload, the user
    properties as headers and the other properties mapped as RabbitMQ maps them."""
    tag = uuid.uuid4().hex
    connection = amqp_connect(amqp_addr)
    publisher = Conn(mqtt_addr, V5)
    try:
        channel = connection.channel()
        queue = bound_queue(channel, "sensors.*.temp")
        payload = ('{"celsius": 21.5, "run": "%s"}' % tag).encode()
        publisher.publish("sensors/kitchen/temp", payload, qos=1, properties=publish_properties(
            UserProperty=[("site", "home"), ("sensor", "kitchen-1")],
            ContentType="application/json",
            CorrelationData=b"corr-42",
            ResponseTopic="replies/kitchen",
            MessageExpiryInterval=600,
        ))
        method, properties, body = consume_tagged(channel, queue, tag)
        headers = {key: text(value) for key, value in (properties.headers or {}).items()}
        problems = []

        def expect(what, actual, wanted):
            if actual != wanted:
                problems.append("%s: got %r, expected %r" % (what, actual, wanted))

        expect("payload", body, payload)
        expect("routing key", method.routing_key, "sensors.kitchen.temp")
        expect("User-Property site -> header", headers.get("site"), "home")
        expect("User-Property sensor -> header", headers.get("sensor"), "kitchen-1")
        expect("QoS 1 -> delivery_mode", properties.delivery_mode, 2)
        expect("Content-Type -> content_type", properties.content_type, "application/json")
        expect("Correlation-Data -> correlation_id", properties.correlation_id, "corr-42")
        # RabbitMQ stores the Response-Topic as an AMQP routing key (its mc_mqtt test suite:
        # 'Response-Topic' tmp/blah/responses -> x-reply-to-topic tmp.blah.responses), so an
        # AMQP service can publish the reply to amq.topic with that key as it is.
        expect("Response-Topic -> header x-reply-to-topic", headers.get("x-reply-to-topic"),
               "replies.kitchen")
        expiration = properties.expiration
        if expiration is None or not expiration.isdigit() or not 0 < int(expiration) <= 600_000:
            problems.append("Message-Expiry 600 s -> expiration: got %r, expected ms <= 600000"
                            % expiration)
        assert not problems, "\n".join(problems + ["headers: %r" % properties.headers])
    finally:
        publisher.close()
        connection.close()


# --- (b) AMQP -> MQTT ----------------------------------------------------------------------------


def amqp_to_mqtt(amqp_addr, mqtt_addr, version):
    """pika publishes to amq.topic with key cmd.device42: paho subscribers (of `version`) of
    cmd/device42 and cmd/+ receive it on topic cmd/device42 with the exact payload at QoS 1; a
    5.0 subscriber sees headers as user properties and the other properties mapped."""
    tag = uuid.uuid4().hex
    subscribers = []
    connection = amqp_connect(amqp_addr)
    try:
        for name, topic_filter in (("exact", "cmd/device42"), ("wildcard", "cmd/+")):
            subscribers.append(("%s %s" % (name, VERSION_NAMES[version]),
                                Conn(mqtt_addr, version), topic_filter))
        for _, conn, topic_filter in subscribers:
            granted = conn.subscribe(topic_filter, 1)
            assert granted == [1], granted
        channel = connection.channel()
        channel.confirm_delivery()
        payload = b"\x01\x02reboot " + tag.encode()
        channel.basic_publish(
            exchange="amq.topic",
            routing_key="cmd.device42",
            body=payload,
            properties=pika.BasicProperties(
                delivery_mode=2,
                content_type="text/plain",
                correlation_id="cmd-7",
                headers={"origin": "ops-console", "x-reply-to-topic": "replies.ops"},
                expiration="60000",
            ),
        )
        for name, conn, _ in subscribers:
            message = recv_tagged(conn, tag)
            assert message.topic == "cmd/device42", "%s: topic %r" % (name, message.topic)
            assert message.payload == payload, "%s: payload %r" % (name, message.payload)
            assert message.qos == 1, \
                "%s: persistent AMQP message to a QoS 1 subscription arrives at QoS %d" % (
                    name, message.qos)
            if conn.version == V5:
                props = message.properties
                user_properties = list(getattr(props, "UserProperty", []))
                problems = []
                if ("origin", "ops-console") not in user_properties:
                    problems.append("header origin -> User-Property: %r" % user_properties)
                if any(key == "x-reply-to-topic" for key, _ in user_properties):
                    problems.append("x-reply-to-topic must become the Response-Topic, not a "
                                    "User-Property: %r" % user_properties)
                for what, actual, wanted in (
                    ("content_type -> Content-Type", getattr(props, "ContentType", None),
                     "text/plain"),
                    ("correlation_id -> Correlation-Data", getattr(props, "CorrelationData", None),
                     b"cmd-7"),
                    ("header x-reply-to-topic -> Response-Topic",
                     getattr(props, "ResponseTopic", None), "replies/ops"),
                ):
                    if actual != wanted:
                        problems.append("%s: got %r, expected %r" % (what, actual, wanted))
                expiry = getattr(props, "MessageExpiryInterval", None)
                if expiry is None or not 0 < expiry <= 60:
                    problems.append("expiration 60000 ms -> Message-Expiry: got %r, expected "
                                    "1..60 s" % expiry)
                assert not problems, "%s:\n%s" % (name, "\n".join(problems))
    finally:
        for _, conn, _ in subscribers:
            conn.close()
        connection.close()


def check_amqp_publish_reaches_mqtt_v311_subscribers(amqp_addr, mqtt_addr):
    amqp_to_mqtt(amqp_addr, mqtt_addr, V311)


def check_amqp_publish_reaches_mqtt_v5_subscribers(amqp_addr, mqtt_addr):
    amqp_to_mqtt(amqp_addr, mqtt_addr, V5)


# --- (c) bulk MQTT QoS 1 -> AMQP manual ack --------------------------------------------------------


def check_bulk_mqtt_qos1_to_amqp_manual_ack(amqp_addr, mqtt_addr):
    """10,000 QoS 1 publishes from paho reach a pika consumer with manual acks: every sequence
    number exactly once, none redelivered, and the queue is empty afterwards."""
    run = uuid.uuid4().hex[:12]
    topic = "warren-test/cross-bulk/%s/data" % run
    connection = amqp_connect(amqp_addr)
    publisher = Conn(mqtt_addr, V311, max_inflight=100)
    try:
        channel = connection.channel()
        queue = bound_queue(channel, "warren-test.cross-bulk.%s.#" % run)
        infos = [publisher.client.publish(topic, ("%d" % seq).encode(), qos=1)
                 for seq in range(BULK)]
        deadline = time.monotonic() + 60
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "QoS 1 publish %d not acknowledged" % info.mid

        channel.basic_qos(prefetch_count=500)
        seen = set()
        duplicates = []
        redelivered = 0
        for method, _properties, body in channel.consume(queue, auto_ack=False,
                                                         inactivity_timeout=STEP):
            assert method is not None, "only %d of %d messages arrived (then %ss of silence)" % (
                len(seen), BULK, STEP)
            seq = int(body)
            if seq in seen:
                duplicates.append(seq)
            seen.add(seq)
            redelivered += bool(method.redelivered)
            channel.basic_ack(method.delivery_tag)
            if len(seen) + len(duplicates) >= BULK:
                break
        channel.cancel()
        assert not duplicates, "%d duplicates, e.g. %r" % (len(duplicates), duplicates[:10])
        missing = sorted(set(range(BULK)) - seen)
        assert not missing, "%d missing, e.g. %r" % (len(missing), missing[:10])
        assert redelivered == 0, "%d redelivered" % redelivered
        # Nothing else is left (no late duplicate behind the last one).
        method, _, body = channel.basic_get(queue, auto_ack=True)
        assert method is None, "unexpected extra message %r" % body
    finally:
        publisher.close()
        connection.close()


CHECKS = [
    check_mqtt_v311_publish_reaches_amqp_binding,
    check_mqtt_v5_properties_reach_amqp,
    check_amqp_publish_reaches_mqtt_v311_subscribers,
    check_amqp_publish_reaches_mqtt_v5_subscribers,
    check_bulk_mqtt_qos1_to_amqp_manual_ack,
]


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    amqp_addr = parse_addr(sys.argv[1])
    mqtt_addr = parse_addr(sys.argv[2])
    passed, failed = run_checks(
        (check.__name__, (lambda check=check: check(amqp_addr, mqtt_addr))) for check in CHECKS
    )
    print("cross: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
