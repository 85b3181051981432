#!/usr/bin/env python3
"""pika and paho-mqtt over warren's TLS and WebSocket listeners: AMQPS, MQTTS, MQTT over
WebSocket (ws and wss), certificate login (AMQP EXTERNAL, MQTT ssl_cert_login), and a message
from a WebSocket device reaching an AMQP consumer.

Run by tests/tls.rs, which generates the certificates, starts the broker (TLS listeners with
verify_peer, MQTT certificate login on) and passes the addresses in the environment:
WARREN_AMQP, WARREN_AMQPS, WARREN_MQTT, WARREN_MQTTS, WARREN_WS, WARREN_WSS (host:port) and
WARREN_CERTS (the directory `warren gen-certs` wrote, with clients `guest` and `mallory`).
Exits 0 when every check passes; otherwise prints each failing check and exits 1.
"""

import os
import queue
import ssl
import sys
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
import pika

STEP = 10  # seconds any single step may take


def address(name):
    host, port = os.environ[name].rsplit(":", 1)
    return host, int(port)


CERTS = os.environ["WARREN_CERTS"]
CA = os.path.join(CERTS, "ca_certificate.pem")


def client_files(name):
    return (os.path.join(CERTS, "client_%s_certificate.pem" % name),
            os.path.join(CERTS, "client_%s_key.pem" % name))


def tls_context(client=None):
    context = ssl.create_default_context(cafile=CA)
    if client:
        certificate, key = client_files(client)
        context.load_cert_chain(certificate, key)
    return context


def unique(prefix):
    return "wt-tls-%s-%s" % (prefix, uuid.uuid4().hex[:12])


def amqp_params(name, context=None, credentials=None):
    host, port = address(name)
    params = dict(host=host, port=port, connection_attempts=1, socket_timeout=STEP,
                  blocked_connection_timeout=STEP)
    if context is not None:
        params["ssl_options"] = pika.SSLOptions(context, "localhost")
    if credentials is not None:
        params["credentials"] = credentials
    return pika.ConnectionParameters(**params)


def amqp_round_trip(params):
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    name = unique("q")
    channel.queue_declare(queue=name, exclusive=True)
    body = os.urandom(32)
    channel.basic_publish(exchange="", routing_key=name, body=body)
    deadline = time.time() + STEP
    while time.time() < deadline:
        method, _, got = channel.basic_get(queue=name, auto_ack=True)
        if method is not None:
            assert got == body, "body changed in transit"
            connection.close()
            return
        time.sleep(0.05)
    raise AssertionError("message not back from the queue")


def check_pika_amqps_plain_login():
    amqp_round_trip(amqp_params("WARREN_AMQPS", tls_context()))


def check_pika_amqps_external_login():
    amqp_round_trip(amqp_params("WARREN_AMQPS", tls_context("guest"),
                                pika.credentials.ExternalCredentials()))


def check_pika_external_refused_without_certificate():
    try:
        pika.BlockingConnection(amqp_params("WARREN_AMQPS", tls_context(),
                                            pika.credentials.ExternalCredentials()))
    except (pika.exceptions.AuthenticationError, pika.exceptions.ProbableAuthenticationError,
            pika.exceptions.AMQPConnectionError):
        return
    raise AssertionError("EXTERNAL login without a client certificate was accepted")


def check_pika_plain_beside_tls():
    amqp_round_trip(amqp_params("WARREN_AMQP"))


class Device:
    """A paho client that records what it receives."""

    def __init__(self, listener, version=mqtt.MQTTv311, context=None, websocket=False,
                 username=None, client_id=None):
        self.received = queue.Queue()
        self.connack = queue.Queue()
        transport = "websockets" if websocket else "tcp"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or unique("dev"),
                                  protocol=version, transport=transport)
        if websocket:
            # RabbitMQ's web_mqtt path (paho defaults to /mqtt).
            self.client.ws_set_options(path="/ws")
        if context is not None:
            self.client.tls_set_context(context)
        if username is not None:
            self.client.username_pw_set(username, "guest")
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, m.payload))
        self.client.on_connect = lambda c, u, f, reason, p: self.connack.put(reason)
        host, port = address(listener)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.reason = self.connack.get(timeout=STEP)

    def subscribe(self, topic, qos=1):
        subscribed = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
        self.client.subscribe(topic, qos)
        subscribed.get(timeout=STEP)

    def publish(self, topic, payload, qos=1):
        self.client.publish(topic, payload, qos=qos).wait_for_publish(timeout=STEP)

    def expect(self, topic, payload):
        got = self.received.get(timeout=STEP)
        assert got == (topic, payload), "expected %r, got %r" % ((topic, payload), got)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_round_trip(listener, version, context=None, websocket=False, username="guest"):
    device = Device(listener, version, context, websocket, username)
    assert not device.reason.is_failure, "CONNECT refused: %s" % device.reason
    topic = "%s/temp" % unique("t")
    device.subscribe(topic)
    payload = os.urandom(16)
    device.publish(topic, payload)
    device.expect(topic, payload)
    device.close()


def check_paho_mqtts_v311():
    mqtt_round_trip("WARREN_MQTTS", mqtt.MQTTv311, tls_context())


def check_paho_mqtts_v5():
    mqtt_round_trip("WARREN_MQTTS", mqtt.MQTTv5, tls_context())


def check_paho_websocket_v311():
    mqtt_round_trip("WARREN_WS", mqtt.MQTTv311, websocket=True)


def check_paho_websocket_v5():
    mqtt_round_trip("WARREN_WS", mqtt.MQTTv5, websocket=True)


def check_paho_secure_websocket():
    mqtt_round_trip("WARREN_WSS", mqtt.MQTTv311, tls_context(), websocket=True)
    mqtt_round_trip("WARREN_WSS", mqtt.MQTTv5, tls_context(), websocket=True)


def check_tls_device_reaches_plain_subscriber():
    listener = Device("WARREN_MQTT")
    topic = "%s/reading" % unique("t")
    listener.subscribe(topic)
    device = Device("WARREN_MQTTS", context=tls_context())
    device.publish(topic, b"21.5")
    listener.expect(topic, b"21.5")
    device.close()
    listener.close()


def websocket_device_reaches_amqp(listener, context):
    connection = pika.BlockingConnection(amqp_params("WARREN_AMQP"))
    channel = connection.channel()
    queue_name = channel.queue_declare(queue="", exclusive=True).method.queue
    device_name = unique("kitchen")
    channel.queue_bind(queue=queue_name, exchange="amq.topic",
                       routing_key="sensors.%s.temp" % device_name)
    device = Device(listener, context=context, websocket=True)
    device.publish("sensors/%s/temp" % device_name, b"22.0")
    for method, _, body in channel.consume(queue_name, auto_ack=True, inactivity_timeout=STEP):
        assert method is not None, "nothing reached the AMQP queue"
        assert method.routing_key == "sensors.%s.temp" % device_name, method.routing_key
        assert body == b"22.0", body
        break
    device.close()
    connection.close()


def check_websocket_device_reaches_amqp_consumer():
    websocket_device_reaches_amqp("WARREN_WS", None)


def check_secure_websocket_device_reaches_amqp_consumer():
    websocket_device_reaches_amqp("WARREN_WSS", tls_context())


def check_mqtt_certificate_login():
    # No user name: the verified certificate's CN (guest) is the user.
    for version in (mqtt.MQTTv311, mqtt.MQTTv5):
        device = Device("WARREN_MQTTS", version, tls_context("guest"))
        assert not device.reason.is_failure, "certificate login refused: %s" % device.reason
        device.close()


def check_mqtt_certificate_login_unknown_user_refused():
    for version in (mqtt.MQTTv311, mqtt.MQTTv5):
        device = Device("WARREN_MQTTS", version, tls_context("mallory"))
        assert device.reason.is_failure, "a certificate for an unknown user logged in"
        # v3.1.1: 5 (not authorised, as RabbitMQ answers bad credentials), which paho reports
        # as reason 0x87; v5: 0x86 (bad user name or password).
        expected = 0x87 if version == mqtt.MQTTv311 else 0x86
        assert device.reason.value == expected, "refused with %s" % device.reason
        device.close()


CHECKS = [
    check_pika_amqps_plain_login,
    check_pika_amqps_external_login,
    check_pika_external_refused_without_certificate,
    check_pika_plain_beside_tls,
    check_paho_mqtts_v311,
    check_paho_mqtts_v5,
    check_paho_websocket_v311,
    check_paho_websocket_v5,
    check_paho_secure_websocket,
    check_tls_device_reaches_plain_subscriber,
    check_websocket_device_reaches_amqp_consumer,
    check_secure_websocket_device_reaches_amqp_consumer,
    check_mqtt_certificate_login,
    check_mqtt_certificate_login_unknown_user_refused,
]


def main():
    failures = 0
    for check in CHECKS:
        try:
            check()
            print("ok   %s" % check.__name__)
        except Exception:  # noqa: BLE001 - report every failing check
            failures += 1
            print("FAIL %s" % check.__name__)
            traceback.print_exc()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
