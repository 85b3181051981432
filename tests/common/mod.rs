//! Shared helpers for the black-box integration tests.
//!
//! [`TestBroker::start`] starts warren in-process on 127.0.0.1 with port 0 and a temporary data
//! directory; [`TestBroker::options`] adjusts that (data directory, configuration, the binary as
//! a child process, which external broker may stand in; see [`broker`]). When
//! `WARREN_TEST_EXTERNAL_AMQP=host:port` is set it starts nothing and points the tests at that
//! broker instead (user guest/guest, vhost `/`), which is how the tests are checked against a
//! real RabbitMQ. Because an external broker is shared by every test running in parallel, every
//! queue and exchange name comes from [`unique`], and tests delete what they declare (or declare
//! it exclusive so it goes with the connection).
//!
//! Every await that could hang is wrapped in [`within`], so a broken broker fails a test in
//! seconds instead of hanging CI.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod broker;
pub(crate) mod http;
pub(crate) mod python;
pub(crate) mod raw;

#[allow(unused_imports)] // A facade: each test binary uses a different part.
pub(crate) use broker::{External, TestBroker, EXTERNAL_AMQP, EXTERNAL_MQTT};

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

/// How long any single step may take before the test fails.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// An in-process broker (never an external one: the management API is warren's) with the
/// management listener on an ephemeral port, and that listener's address.
pub(crate) async fn broker_with_management() -> (TestBroker, std::net::SocketAddr) {
    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.management_port = Some(0))
        .start()
        .await;
    let address = broker
        .in_process()
        .management_addr()
        .expect("the management listener is on");
    (broker, address)
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`STEP`].
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    within_for(STEP, what, future).await
}

/// [`within`] with an explicit limit.
pub(crate) async fn within_for<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A name no other test (or earlier run against a shared broker) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "warren-test.{prefix}.{}.{nanos:08x}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Opens a client connection as guest to vhost `/`.
pub(crate) async fn connect(broker: &TestBroker) -> Connection {
    within(
        "connection open",
        Connection::connect(&broker.amqp_uri(), ConnectionProperties::default()),
    )
    .await
    .expect("connection opens")
}

/// Opens a channel.
pub(crate) async fn channel(connection: &Connection) -> Channel {
    within("channel open", connection.create_channel())
        .await
        .expect("channel opens")
}

/// Opens a channel in publisher-confirm mode, so that a publish awaited through [`publish`] has
/// been routed (and enqueued) by the broker when it returns.
pub(crate) async fn confirm_channel(connection: &Connection) -> Channel {
    let ch = channel(connection).await;
    within(
        "confirm.select",
        ch.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm.select-ok");
    ch
}

/// Closes a connection cleanly.
pub(crate) async fn close(connection: Connection) {
    within("connection close", connection.close(200, "bye"))
        .await
        .expect("connection.close-ok");
}

/// Declares a queue exclusive to the connection (deleted by the broker when the connection
/// closes, so nothing leaks into a shared broker).
pub(crate) async fn exclusive_queue(ch: &Channel, prefix: &str) -> String {
    let name = unique(prefix);
    within(
        "queue.declare",
        ch.queue_declare(
            &name,
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.declare-ok");
    name
}

/// Publishes `body` and waits for the broker's confirmation; the channel must be in confirm mode
/// (see [`confirm_channel`]). Panics unless the broker acks it.
pub(crate) async fn publish(ch: &Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    publish_with(ch, exchange, routing_key, body, BasicProperties::default()).await;
}

/// [`publish`] with properties.
pub(crate) async fn publish_with(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    let confirm = within(
        "basic.publish",
        ch.basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            body,
            properties,
        ),
    )
    .await
    .expect("basic.publish is sent");
    let confirmation = within("publisher confirm", confirm)
        .await
        .expect("publisher confirm arrives");
    assert!(
        confirmation.is_ack(),
        "publish to {exchange:?}/{routing_key:?} was not acked: {confirmation:?}"
    );
}

/// `basic.get` with auto-ack: the body of the next message, or `None` on get-empty.
pub(crate) async fn get_body(ch: &Channel, queue: &str) -> Option<Vec<u8>> {
    within(
        "basic.get",
        ch.basic_get(queue, BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get answered")
    .map(|message| message.delivery.data)
}

/// Drains `queue` with `basic.get` (auto-ack) and returns the bodies as strings, in order.
pub(crate) async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(body) = get_body(ch, queue).await {
        bodies.push(String::from_utf8_lossy(&body).into_owned());
    }
    bodies
}

/// Starts a consumer with manual acks.
pub(crate) async fn consume(ch: &Channel, queue: &str) -> Consumer {
    within(
        "basic.consume",
        ch.basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("basic.consume {queue}: {e}"))
}

/// The next delivery of `consumer`; panics if the stream ends or errors.
pub(crate) async fn next_delivery(consumer: &mut Consumer) -> lapin::message::Delivery {
    within("basic.deliver", consumer.next())
        .await
        .expect("consumer stream ended")
        .expect("delivery without error")
}

/// The reply code of a channel or connection exception carried by a lapin error.
pub(crate) fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error {
        lapin::Error::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The reply text of a channel or connection exception carried by a lapin error.
pub(crate) fn reply_text(error: &lapin::Error) -> String {
    match error {
        lapin::Error::ProtocolError(amqp) => amqp.get_message().to_string(),
        other => other.to_string(),
    }
}

/// Asserts that `result` failed with the AMQP exception `code` and that its reply text starts
/// with `text_prefix` (RabbitMQ writes `"<NAME> - <detail>"`).
pub(crate) fn assert_exception<T: std::fmt::Debug>(
    result: Result<T, lapin::Error>,
    code: u16,
    text_prefix: &str,
) {
    match result {
        Ok(value) => panic!("expected AMQP exception {code}, got success: {value:?}"),
        Err(error) => {
            assert_eq!(
                reply_code(&error),
                Some(code),
                "expected AMQP exception {code}, got {error:?}"
            );
            let text = reply_text(&error);
            assert!(
                text.starts_with(text_prefix),
                "reply text {text:?} does not start with {text_prefix:?}"
            );
        }
    }
}

/// Checks that `connection` still works: a new channel, an exclusive queue, a confirmed publish
/// and a `basic.get` of the same body.
pub(crate) async fn assert_connection_works(connection: &Connection) {
    let ch = confirm_channel(connection).await;
    let queue = exclusive_queue(&ch, "still-works").await;
    publish(&ch, "", &queue, b"still alive").await;
    assert_eq!(
        get_body(&ch, &queue).await.as_deref(),
        Some(&b"still alive"[..])
    );
    within("queue.delete", ch.queue_delete(&queue, Default::default()))
        .await
        .expect("queue.delete-ok");
    within("channel.close", ch.close(200, "done"))
        .await
        .expect("channel.close-ok");
}

/// `(message_count, consumer_count)` of a queue, from a passive `queue.declare`. The message
/// count is the number of ready (not unacknowledged) messages, as RabbitMQ reports it.
pub(crate) async fn queue_counts(ch: &Channel, queue: &str) -> (u32, u32) {
    let declared = within(
        "passive queue.declare",
        ch.queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare of {queue}: {e}"));
    (declared.message_count(), declared.consumer_count())
}

/// Deletes a queue (unconditionally).
pub(crate) async fn delete_queue(ch: &Channel, queue: &str) {
    within("queue.delete", ch.queue_delete(queue, Default::default()))
        .await
        .expect("queue.delete-ok");
}

/// Declares a plain (non-exclusive, non-durable) queue that several connections can share;
/// the test deletes it with [`delete_queue`].
pub(crate) async fn shared_queue(ch: &Channel, prefix: &str) -> String {
    let name = unique(prefix);
    within(
        "queue.declare",
        ch.queue_declare(&name, QueueDeclareOptions::default(), FieldTable::default()),
    )
    .await
    .expect("queue.declare-ok");
    name
}
