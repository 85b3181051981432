#!/usr/bin/env python3
"""pika (the Python client Celery's users meet first) against the broker under test.

Usage: python3 tests/python/test_pika.py HOST PORT

Run by tests/pika.rs, which starts the broker and enforces an overall timeout. Exits 0 when
every check passes; on failure prints the failing check and exits 1. Names are unique per run
and queues are exclusive (or deleted), so a shared broker such as RabbitMQ is left clean.
"""

import sys
import traceback
import uuid

import pika
import pika.exceptions


def params(host, port):
    return pika.ConnectionParameters(
        host=host,
        port=port,
        virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        socket_timeout=10,
        stack_timeout=15,
        blocked_connection_timeout=15,
        connection_attempts=1,
    )


def unique(prefix):
    return "warren-test.pika.%s.%s" % (prefix, uuid.uuid4().hex[:12])


def exclusive_queue(channel, prefix):
    return channel.queue_declare(queue=unique(prefix), exclusive=True).method.queue


def consume_one(channel, queue, auto_ack=False):
    """The next delivery on `queue` as (method, properties, body), or fail after 10 s."""
    for method, properties, body in channel.consume(
        queue, auto_ack=auto_ack, inactivity_timeout=10
    ):
        assert method is not None, "no delivery within 10 s"
        channel.cancel()
        return method, properties, body
    raise AssertionError("consumer generator ended")


def check_round_trip_with_properties(connection):
    channel = connection.channel()
    queue = exclusive_queue(channel, "props")
    properties = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"tenant": "t1", "attempt": 3, "nested": {"k": "v"}, "flag": True},
        correlation_id="corr-42",
        reply_to="reply-queue",
        delivery_mode=2,
        priority=5,
        message_id="msg-1",
        timestamp=1700000000,
        type="order.created",
        app_id="pika-test",
        expiration="60000",
    )
    body = b'{"hello": "world"}'
    channel.basic_publish(exchange="", routing_key=queue, body=body, properties=properties)

    method, got, got_body = consume_one(channel, queue)
    assert got_body == body, got_body
    assert method.routing_key == queue, method.routing_key
    assert method.exchange == "", method.exchange
    assert method.redelivered is False
    assert got.content_type == "application/json", got.content_type
    assert got.content_encoding == "utf-8", got.content_encoding
    assert got.correlation_id == "corr-42", got.correlation_id
    assert got.reply_to == "reply-queue", got.reply_to
    assert got.delivery_mode == 2, got.delivery_mode
    assert got.priority == 5, got.priority
    assert got.message_id == "msg-1", got.message_id
    assert got.timestamp == 1700000000, got.timestamp
    assert got.type == "order.created", got.type
    assert got.app_id == "pika-test", got.app_id
    assert got.expiration == "60000", got.expiration
    # pika decodes long strings in tables as bytes or str depending on version; normalise.
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in got.headers.items()}
    assert headers["tenant"] == "t1", headers
    assert headers["attempt"] == 3, headers
    assert headers["flag"] is True, headers
    nested = {
        k: (v.decode() if isinstance(v, bytes) else v) for k, v in headers["nested"].items()
    }
    assert nested == {"k": "v"}, nested
    channel.basic_ack(method.delivery_tag)
    channel.close()


def check_basic_get(connection):
    channel = connection.channel()
    queue = exclusive_queue(channel, "get")
    method, _, _ = channel.basic_get(queue)
    assert method is None, "get-empty on an empty queue"
    channel.confirm_delivery()
    for i in range(3):
        channel.basic_publish(exchange="", routing_key=queue, body=str(i).encode())
    for i in range(3):
        method, _, body = channel.basic_get(queue, auto_ack=False)
        assert method is not None, "get-ok"
        assert body == str(i).encode(), body
        assert method.message_count == 2 - i, method.message_count
        channel.basic_ack(method.delivery_tag)
    method, _, _ = channel.basic_get(queue)
    assert method is None, "get-empty once drained"
    channel.close()


def check_confirms(connection):
    channel = connection.channel()
    channel.confirm_delivery()
    queue = exclusive_queue(channel, "confirms")
    for i in range(500):
        # With confirms on, BlockingChannel.basic_publish waits for the ack and raises on nack.
        channel.basic_publish(exchange="", routing_key=queue, body=b"m%d" % i)
    declared = channel.queue_declare(queue=queue, passive=True)
    assert declared.method.message_count == 500, declared.method.message_count

    # Mandatory and unroutable: basic.return, which pika raises as UnroutableError.
    try:
        channel.basic_publish(
            exchange="amq.direct", routing_key=unique("nobody"), body=b"x", mandatory=True
        )
    except pika.exceptions.UnroutableError as error:
        returned = error.messages[0]
        assert returned.method.reply_code == 312, returned.method.reply_code
        assert returned.method.reply_text == "NO_ROUTE", returned.method.reply_text
    else:
        raise AssertionError("mandatory unroutable publish was not returned")
    channel.close()


def check_topic_routing(connection):
    channel = connection.channel()
    channel.confirm_delivery()
    exchange = unique("topic")
    channel.exchange_declare(exchange=exchange, exchange_type="topic")
    patterns = {"star": "sensors.*.temp", "hash": "sensors.#", "zero": "sensors.room1.#"}
    queues = {}
    for label, pattern in patterns.items():
        queues[label] = exclusive_queue(channel, label)
        channel.queue_bind(queue=queues[label], exchange=exchange, routing_key=pattern)
    for key in ["sensors.room1.temp", "sensors.room1", "sensors", "sensors.a.b.temp", "other"]:
        channel.basic_publish(exchange=exchange, routing_key=key, body=key.encode())
    expected = {
        "star": ["sensors.room1.temp"],
        "hash": ["sensors.room1.temp", "sensors.room1", "sensors", "sensors.a.b.temp"],
        "zero": ["sensors.room1.temp", "sensors.room1"],
    }
    for label, want in expected.items():
        got = []
        while True:
            method, _, body = channel.basic_get(queues[label], auto_ack=True)
            if method is None:
                break
            got.append(body.decode())
        assert got == want, (label, got, want)
    channel.exchange_delete(exchange)
    channel.close()


def check_passive_declare_of_missing_queue(connection):
    channel = connection.channel()
    missing = unique("missing")
    try:
        channel.queue_declare(queue=missing, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404, error.reply_code
        assert error.reply_text.startswith("NOT_FOUND - no queue '%s'" % missing), error.reply_text
    else:
        raise AssertionError("passive declare of a missing queue succeeded")
    assert channel.is_closed
    # The connection is fine.
    channel = connection.channel()
    queue = exclusive_queue(channel, "after-404")
    channel.basic_publish(exchange="", routing_key=queue, body=b"ok")
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"ok", body
    channel.close()


def check_direct_reply_to_rpc(connection):
    """pika's RPC pattern over direct reply-to, as Celery's rpc:// backend uses it."""
    server = connection.channel()
    requests = exclusive_queue(server, "rpc")
    client = connection.channel()
    replies = []
    client.basic_consume(
        queue="amq.rabbitmq.reply-to",
        on_message_callback=lambda ch, method, props, body: replies.append((props, body)),
        auto_ack=True,
    )
    client.basic_publish(
        exchange="",
        routing_key=requests,
        properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="42"),
        body=b"6*7",
    )
    method, props, body = None, None, None
    for _ in range(100):
        method, props, body = server.basic_get(requests, auto_ack=True)
        if method is not None:
            break
        connection.process_data_events(time_limit=0.1)
    assert body == b"6*7", body
    assert props.reply_to.startswith("amq.rabbitmq.reply-to."), props.reply_to
    server.basic_publish(
        exchange="",
        routing_key=props.reply_to,
        properties=pika.BasicProperties(correlation_id=props.correlation_id),
        body=b"42",
    )
    for _ in range(100):
        if replies:
            break
        connection.process_data_events(time_limit=0.1)
    assert replies, "no reply within 10 s"
    reply_props, reply = replies[0]
    assert reply == b"42", reply
    assert reply_props.correlation_id == "42", reply_props.correlation_id
    # Naming the pseudo-queue as reply_to without consuming from it is refused.
    other = connection.channel()
    try:
        other.basic_publish(
            exchange="",
            routing_key=requests,
            properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"),
            body=b"x",
        )
        other.queue_declare(queue=requests, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 406, error.reply_code
        assert "fast reply consumer does not exist" in error.reply_text, error.reply_text
    else:
        raise AssertionError("reply_to amq.rabbitmq.reply-to without a reply consumer was accepted")
    client.close()
    server.close()


CHECKS = [
    check_round_trip_with_properties,
    check_basic_get,
    check_confirms,
    check_topic_routing,
    check_passive_declare_of_missing_queue,
    check_direct_reply_to_rpc,
]


def main():
    if len(sys.argv) != 3:
        print("usage: test_pika.py HOST PORT", file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    failures = 0
    for check in CHECKS:
        connection = pika.BlockingConnection(params(host, port))
        try:
            check(connection)
            print("ok   %s" % check.__name__)
        except Exception:
            failures += 1
            print("FAIL %s" % check.__name__)
            traceback.print_exc()
        finally:
            if connection.is_open:
                connection.close()
    print("%d of %d pika checks failed" % (failures, len(CHECKS)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
