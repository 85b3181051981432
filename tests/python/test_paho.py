#!/usr/bin/env python3
"""paho-mqtt (the Python MQTT client most devices and scripts use) against the broker under test,
over MQTT 3.1.1 and MQTT 5.0.

Usage: python3 tests/python/test_paho.py AMQP_HOST:PORT MQTT_HOST:PORT

(The AMQP address is accepted for symmetry with test_cross.py and not used.) Run by
tests/mqtt_paho.rs, which starts the broker and enforces an overall timeout. Exits 0 when every
check passes; otherwise prints each failing check and exits 1. Client ids and topics are unique
per run, retained messages are cleared and persistent sessions removed, so a shared broker
(Mosquitto, RabbitMQ) is left clean.

The helpers here (Conn, unique_topic, ...) are also used by test_cross.py.
"""

import queue
import sys
import threading
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

STEP = 10  # seconds any single step may take

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
VERSION_NAMES = {V311: "MQTT 3.1.1", V5: "MQTT 5.0"}


def unique_id(prefix):
    return "wt-paho-%s-%s" % (prefix, uuid.uuid4().hex[:12])


def unique_topic(prefix):
    # No '.' (it would become an extra level on the AMQP side).
    return "warren-test/paho/%s/%s" % (prefix, uuid.uuid4().hex[:12])


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Conn:
    """A connected paho client running its network loop in a thread; received messages are
    queued, CONNACK / SUBACK / UNSUBACK are awaited with a timeout."""

    def __init__(self, addr, version, client_id=None, clean=True, will=None,
                 connect_properties=None, max_inflight=None):
        self.version = version
        self.messages = queue.Queue()
        self.client_id = client_id or unique_id("c")
        self._connected = threading.Event()
        self._acks = {}
        self._lock = threading.Lock()
        self.connack = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean if version == V311 else None,
            protocol=version,
            reconnect_on_failure=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda client, userdata, message: self.messages.put(message)
        self.client.on_subscribe = self._on_ack
        self.client.on_unsubscribe = self._on_ack
        if max_inflight is not None:
            self.client.max_inflight_messages_set(max_inflight)
        if will is not None:
            topic, payload, qos = will
            self.client.will_set(topic, payload, qos=qos, retain=False)
        host, port = addr
        if version == V5:
            self.client.connect(host, port, keepalive=30, clean_start=clean,
                                properties=connect_properties)
        else:
            self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(STEP):
            self.client.loop_stop()
            raise AssertionError("no CONNACK within %ss for %s" % (STEP, self.client_id))
        flags, reason_code, properties = self.connack
        if reason_code != 0:
            self.client.loop_stop()
            raise AssertionError("CONNACK refused %s: %s" % (self.client_id, reason_code))
        self.session_present = bool(flags.session_present)
        self.connack_properties = properties

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (flags, reason_code, properties)
        self._connected.set()

    def _on_ack(self, client, userdata, mid, reason_codes, properties):
        with self._lock:
            entry = self._acks.setdefault(mid, [threading.Event(), None])
        entry[1] = reason_codes
        entry[0].set()

    def _wait_ack(self, mid, what):
        with self._lock:
            entry = self._acks.setdefault(mid, [threading.Event(), None])
        assert entry[0].wait(STEP), "no %s within %ss" % (what, STEP)
        return entry[1]

    def subscribe(self, topic, qos=1, options=None):
        """Subscribes; returns the granted QoS (or reason code) values from the SUBACK."""
        if options is not None:
            result, mid = self.client.subscribe(topic, options=options)
        else:
            result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, "subscribe %r: %s" % (topic, result)
        return [getattr(code, "value", code) for code in self._wait_ack(mid, "SUBACK")]

    def unsubscribe(self, topic):
        result, mid = self.client.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS
        self._wait_ack(mid, "UNSUBACK")

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        """Publishes and waits for the QoS exchange to complete (PUBACK / PUBCOMP)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(STEP)
        assert info.is_published(), "publish to %r not acknowledged within %ss" % (topic, STEP)
        return info

    def recv(self, timeout=STEP):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message within %ss on %s" % (timeout, self.client_id))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def publish_properties(**fields):
    properties = Properties(PacketTypes.PUBLISH)
    for name, value in fields.items():
        setattr(properties, name, value)
    return properties


# --- checks: each takes (mqtt_addr, version) ---------------------------------------------------


def check_qos_round_trips(addr, version):
    """QoS 0/1/2 publish to subscriptions at QoS 0/1/2: delivered once, unchanged, at the lower QoS."""
    base = unique_topic("qos")
    subscriber = Conn(addr, version)
    publisher = Conn(addr, version)
    try:
        for sub_qos in range(3):
            granted = subscriber.subscribe("%s/sub%d" % (base, sub_qos), sub_qos)
            assert granted == [sub_qos], "SUBACK for QoS %d: %r" % (sub_qos, granted)
        for sub_qos in range(3):
            for pub_qos in range(3):
                publisher.publish("%s/sub%d" % (base, sub_qos),
                                  ("pub%d-sub%d" % (pub_qos, sub_qos)).encode(), qos=pub_qos)
        received = {}
        while len(received) < 9:
            message = subscriber.recv()
            payload = message.payload.decode()
            assert payload not in received, "%s delivered twice" % payload
            received[payload] = (message.topic, message.qos)
        for sub_qos in range(3):
            for pub_qos in range(3):
                key = "pub%d-sub%d" % (pub_qos, sub_qos)
                assert received[key] == ("%s/sub%d" % (base, sub_qos), min(pub_qos, sub_qos)), \
                    "%s: %r" % (key, received[key])
    finally:
        subscriber.close()
        publisher.close()


def check_wildcards_and_unsubscribe(addr, version):
    """'+' and '#' filters; after UNSUBSCRIBE a filter delivers nothing more."""
    base = unique_topic("wild")
    subscriber = Conn(addr, version)
    publisher = Conn(addr, version)
    try:
        subscriber.subscribe(base + "/+/temp", 1)
        subscriber.subscribe(base + "/alerts/#", 1)
        publisher.publish(base + "/kitchen/temp", b"21.5")
        publisher.publish(base + "/kitchen/humidity", b"40")  # matches neither
        publisher.publish(base + "/alerts", b"parent level")  # '#' matches the parent too
        publisher.publish(base + "/alerts/fire/floor1", b"fire")
        got = [(m.topic, m.payload) for m in (subscriber.recv() for _ in range(3))]
        assert got == [
            (base + "/kitchen/temp", b"21.5"),
            (base + "/alerts", b"parent level"),
            (base + "/alerts/fire/floor1", b"fire"),
        ], got
        subscriber.unsubscribe(base + "/+/temp")
        publisher.publish(base + "/kitchen/temp", b"after unsubscribe")
        publisher.publish(base + "/alerts/x", b"marker")
        message = subscriber.recv()
        assert message.payload == b"marker", "unsubscribed filter delivered %r" % message.payload
    finally:
        subscriber.close()
        publisher.close()


def check_retained(addr, version):
    """A retained message reaches a late subscriber with the retain flag; an empty retained
    publish clears it."""
    topic = unique_topic("retained")
    publisher = Conn(addr, version)
    try:
        publisher.publish(topic, b"last known value", qos=1, retain=True)
        late = Conn(addr, version)
        try:
            late.subscribe(topic, 1)
            message = late.recv()
            assert message.payload == b"last known value" and message.retain, \
                (message.payload, message.retain)
        finally:
            late.close()
        publisher.publish(topic, b"", qos=1, retain=True)
        later = Conn(addr, version)
        try:
            later.subscribe(topic, 1)
            publisher.publish(topic, b"live", qos=1)
            message = later.recv()
            assert message.payload == b"live" and not message.retain, \
                "retained message not cleared: %r" % message.payload
        finally:
            later.close()
    finally:
        publisher.close()


def check_will_on_abnormal_disconnect(addr, version):
    """The will is published when the client's socket dies without DISCONNECT."""
    topic = unique_topic("will")
    watcher = Conn(addr, version)
    try:
        watcher.subscribe(topic, 1)
        dying = Conn(addr, version, will=(topic, b"device offline", 1))
        # Stop the network thread, then close the socket under paho: no DISCONNECT is sent.
        dying.client.loop_stop()
        dying.client.socket().close()
        message = watcher.recv()
        assert (message.topic, message.payload) == (topic, b"device offline"), message.payload
    finally:
        watcher.close()


def check_persistent_session(addr, version):
    """A persistent session keeps its subscription and queues QoS 1 messages while offline."""
    topic = unique_topic("session")
    client_id = unique_id("session")
    connect_properties = None
    if version == V5:
        connect_properties = Properties(PacketTypes.CONNECT)
        connect_properties.SessionExpiryInterval = 300
    first = Conn(addr, version, client_id=client_id, clean=False,
                 connect_properties=connect_properties)
    first.subscribe(topic, 1)
    first.close()
    publisher = Conn(addr, version)
    try:
        for i in range(10):
            publisher.publish(topic, ("queued-%d" % i).encode())
    finally:
        publisher.close()
    again = Conn(addr, version, client_id=client_id, clean=False,
                 connect_properties=connect_properties)
    try:
        assert again.session_present, "CONNACK session present after reconnect"
        got = [again.recv().payload for _ in range(10)]
        assert got == [("queued-%d" % i).encode() for i in range(10)], got
    finally:
        again.close()
    # Remove the session.
    if version == V5:
        connect_properties = Properties(PacketTypes.CONNECT)
        connect_properties.SessionExpiryInterval = 0
    Conn(addr, version, client_id=client_id, clean=True,
         connect_properties=connect_properties).close()


def check_v5_properties(addr, version):
    """MQTT 5 publication properties arrive unchanged; user properties keep their order."""
    topic = unique_topic("props")
    subscriber = Conn(addr, version)
    publisher = Conn(addr, version)
    try:
        subscriber.subscribe(topic, 1)
        user_properties = [("device", "kitchen-1"), ("unit", "celsius"), ("device", "again")]
        publisher.publish(topic, b'{"t": 21.5}', properties=publish_properties(
            UserProperty=user_properties,
            ContentType="application/json",
            ResponseTopic=topic + "/reply",
            CorrelationData=b"\x00\x01req-7",
            PayloadFormatIndicator=1,
        ))
        message = subscriber.recv()
        props = message.properties
        assert message.payload == b'{"t": 21.5}'
        assert list(getattr(props, "UserProperty", [])) == user_properties, \
            getattr(props, "UserProperty", None)
        assert getattr(props, "ContentType", None) == "application/json"
        assert getattr(props, "ResponseTopic", None) == topic + "/reply"
        assert getattr(props, "CorrelationData", None) == b"\x00\x01req-7"
        assert getattr(props, "PayloadFormatIndicator", None) == 1
    finally:
        subscriber.close()
        publisher.close()


def check_v5_request_response(addr, version):
    """The MQTT 5 request/response pattern: a responder answers on the request's Response Topic
    with its Correlation Data, and the requester matches the answer."""
    requests = unique_topic("requests")
    replies = unique_topic("replies")
    responder = Conn(addr, version)
    requester = Conn(addr, version)
    try:
        responder.subscribe(requests, 1)
        requester.subscribe(replies, 1)
        requester.publish(requests, b"2+2", properties=publish_properties(
            ResponseTopic=replies, CorrelationData=b"req-1"))
        request = responder.recv()
        responder.publish(request.properties.ResponseTopic, b"4", properties=publish_properties(
            CorrelationData=request.properties.CorrelationData))
        reply = requester.recv()
        assert (reply.topic, reply.payload, reply.properties.CorrelationData) == \
            (replies, b"4", b"req-1")
    finally:
        responder.close()
        requester.close()


def check_v5_no_local(addr, version):
    """MQTT 5 subscription option No Local: a client's own publishes are not sent back to it."""
    topic = unique_topic("nolocal")
    client = Conn(addr, version)
    other = Conn(addr, version)
    try:
        client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
        client.publish(topic, b"own message")
        other.publish(topic, b"from another client")
        message = client.recv()
        assert message.payload == b"from another client", \
            "No Local subscription received its own message %r" % message.payload
    finally:
        client.close()
        other.close()


def check_v5_shared_subscription(addr, version):
    """$share/group/filter: each message goes to exactly one member of the group."""
    base = unique_topic("shared")
    members = [Conn(addr, version) for _ in range(2)]
    publisher = Conn(addr, version)
    try:
        for member in members:
            member.subscribe("$share/workers/%s/#" % base, 1)
        for i in range(40):
            publisher.publish("%s/job" % base, str(i).encode())
        seen = []
        deadline = time.monotonic() + STEP
        while len(seen) < 40:
            assert time.monotonic() < deadline, "only %d of 40 shared messages arrived" % len(seen)
            for member in members:
                try:
                    seen.append(int(member.messages.get(timeout=0.05).payload))
                except queue.Empty:
                    pass
            assert len(seen) <= 40
        assert sorted(seen) == list(range(40)), sorted(seen)
    finally:
        for member in members:
            member.close()
        publisher.close()


BOTH = (V311, V5)
ONLY_V5 = (V5,)

# (check, protocol versions it runs with)
CHECKS = [
    (check_qos_round_trips, BOTH),
    (check_wildcards_and_unsubscribe, BOTH),
    (check_retained, BOTH),
    (check_will_on_abnormal_disconnect, BOTH),
    (check_persistent_session, BOTH),
    (check_v5_properties, ONLY_V5),
    (check_v5_request_response, ONLY_V5),
    (check_v5_no_local, ONLY_V5),
    (check_v5_shared_subscription, ONLY_V5),
]


def run_checks(checks):
    """Runs (label, function) pairs, printing each result; returns (passed, failed)."""
    passed = failed = 0
    for label, function in checks:
        try:
            function()
            passed += 1
            print("ok      %s" % label, flush=True)
        except Exception:  # noqa: BLE001 - report every failure, then exit 1
            failed += 1
            print("FAILED  %s" % label, flush=True)
            traceback.print_exc(file=sys.stdout)
    return passed, failed


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    mqtt_addr = parse_addr(sys.argv[2])
    checks = [
        ("%s [%s]" % (check.__name__, VERSION_NAMES[version]),
         (lambda check=check, version=version: check(mqtt_addr, version)))
        for version in BOTH
        for check, versions in CHECKS
        if version in versions
    ]
    passed, failed = run_checks(checks)
    print("paho: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
