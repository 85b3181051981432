//! Harness for the durability and crash tests (`tests/durability.rs`, `tests/crash.rs`).
//!
//! The tests run a broker on a data directory they own (a `tempfile::TempDir`), so that a
//! second broker can be started on the same directory and must recover what the first left,
//! with the shared harness (`common::broker`):
//!
//! - `TestBroker::options().data_dir(dir).start()`: warren in the test process; its
//!   `shutdown` is the graceful one (connections closed, store flushed).
//! - `TestBroker::options().data_dir(dir).process().start()`: the `warren` binary as a child
//!   process on ephemeral ports, its log captured line by line; stopped with SIGKILL (`kill`, a
//!   crash) or SIGTERM (`terminate`, a graceful stop), its resident set size from
//!   `/proc/<pid>/status`.
//!
//! This module adds AMQP helpers (pipelined publishes with publisher confirms, manual-ack
//! consumers, passive declares), a minimal MQTT 3.1.1 client (rumqttc) and a reader for the
//! segment files (`<data-dir>/msgs/*.seg`, records framed as magic `WRN1` | length u32 BE |
//! CRC-32 u32 BE | payload) for the tests that damage them.
//!
//! Every await that could hang is bounded ([`within`], 10 s per step, or an explicit limit), so
//! a broken broker fails a test instead of hanging CI. Names come from [`unique`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The AMQP helpers, time limits and names every harness shares.
#[path = "../common/mod.rs"]
pub(crate) mod common;
/// The broker harness's process parts: the captured log, RSS, start/stop limit.
#[allow(unused_imports)] // A facade: each test binary uses a different part.
pub(crate) use common::broker::{rss_bytes, strip_ansi, Log, START_STOP};
#[allow(unused_imports)] // A facade: each test binary uses a different part.
pub(crate) use common::{
    channel, close, confirm_channel, consume, next_delivery, reply_code, unique, within,
    within_for, TestBroker, STEP,
};

/// An MQTT client id / topic level (letters, digits and `-` only) no other test uses.
pub(crate) fn unique_mqtt(prefix: &str) -> String {
    unique(prefix).replace('.', "-")
}

/// A numeric setting from the environment, or `default` when unset. Panics on garbage so a
/// typo in a soak run is not silently ignored.
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a non-negative integer")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------------
// AMQP
// ---------------------------------------------------------------------------------------------

/// Publishes at most this many messages ahead of their confirms.
pub(crate) const CONFIRM_WINDOW: usize = 1024;

/// `amqp://guest:guest@ADDR/%2f`.
pub(crate) fn amqp_uri(addr: SocketAddr) -> String {
    format!("amqp://guest:guest@{addr}/%2f")
}

/// Opens an AMQP connection as guest to vhost `/`.
pub(crate) async fn connect(addr: SocketAddr) -> Connection {
    within(
        "connection open",
        Connection::connect(&amqp_uri(addr), ConnectionProperties::default()),
    )
    .await
    .expect("connection opens")
}

/// Declares a queue (not exclusive, not auto-delete), durable or not.
pub(crate) async fn declare_queue(ch: &Channel, name: &str, durable: bool) {
    within(
        "queue.declare",
        ch.queue_declare(
            name,
            QueueDeclareOptions {
                durable,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("queue.declare {name}: {e}"));
}

/// Declares an exchange, durable or not.
pub(crate) async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: lapin::ExchangeKind,
    durable: bool,
) {
    within(
        "exchange.declare",
        ch.exchange_declare(
            name,
            kind,
            ExchangeDeclareOptions {
                durable,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("exchange.declare {name}: {e}"));
}

/// Binds `queue` to `exchange` with `routing_key`.
pub(crate) async fn bind(ch: &Channel, queue: &str, exchange: &str, routing_key: &str) {
    within(
        "queue.bind",
        ch.queue_bind(
            queue,
            exchange,
            routing_key,
            Default::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("queue.bind {queue} to {exchange}: {e}"));
}

/// Properties of a persistent message (delivery mode 2).
pub(crate) fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// Properties of a transient message (delivery mode 1).
pub(crate) fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

/// Publishes every message (pipelined, at most [`CONFIRM_WINDOW`] ahead of the confirms) on a
/// confirm-mode channel and waits until all are confirmed; panics on a nack or an error.
/// Returns how many were published.
pub(crate) async fn publish_confirmed<I>(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: I,
) -> usize
where
    I: IntoIterator<Item = (Vec<u8>, BasicProperties)>,
{
    publish_confirmed_window(ch, exchange, routing_key, messages, CONFIRM_WINDOW).await
}

/// [`publish_confirmed`] with at most `window` messages awaiting their confirms.
pub(crate) async fn publish_confirmed_window<I>(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: I,
    window: usize,
) -> usize
where
    I: IntoIterator<Item = (Vec<u8>, BasicProperties)>,
{
    let mut in_flight = FuturesUnordered::new();
    let mut count = 0usize;
    for (body, properties) in messages {
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions::default(),
                &body,
                properties,
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("basic.publish #{count} to {exchange:?}/{routing_key:?}: {e}"));
        let index = count;
        in_flight.push(async move { (index, confirm.await) });
        count += 1;
        while in_flight.len() >= window.max(1) {
            settle(&mut in_flight).await;
        }
    }
    while !in_flight.is_empty() {
        settle(&mut in_flight).await;
    }
    count
}

async fn settle<F>(in_flight: &mut FuturesUnordered<F>)
where
    F: Future<Output = (usize, lapin::Result<lapin::publisher_confirm::Confirmation>)>,
{
    let (index, result) = within("a publisher confirm", in_flight.next())
        .await
        .expect("a confirm is pending");
    match result {
        Ok(confirmation) if confirmation.is_ack() => {}
        other => panic!("message #{index} was not confirmed: {other:?}"),
    }
}

/// Sets the prefetch window of a channel (0 = unlimited).
pub(crate) async fn prefetch(ch: &Channel, count: u16) {
    within("basic.qos", ch.basic_qos(count, BasicQosOptions::default()))
        .await
        .expect("basic.qos-ok");
}

/// The next `n` deliveries of `consumer`.
pub(crate) async fn take(consumer: &mut Consumer, n: usize) -> Vec<lapin::message::Delivery> {
    let mut deliveries = Vec::with_capacity(n);
    for _ in 0..n {
        deliveries.push(next_delivery(consumer).await);
    }
    deliveries
}

/// Acks one delivery tag (`multiple`: and everything before it).
pub(crate) async fn ack(ch: &Channel, delivery_tag: u64, multiple: bool) {
    within(
        "basic.ack",
        ch.basic_ack(delivery_tag, BasicAckOptions { multiple }),
    )
    .await
    .expect("basic.ack is sent");
}

/// The number of ready messages of a queue (passive `queue.declare`); panics if it does not
/// exist.
pub(crate) async fn queue_count(ch: &Channel, queue: &str) -> u32 {
    common::queue_counts(ch, queue).await.0
}

/// Whether a queue exists (passive declare on a channel of its own: 404 closes the channel).
pub(crate) async fn queue_exists(connection: &Connection, queue: &str) -> bool {
    let ch = channel(connection).await;
    let result = within(
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
    .await;
    match result {
        Ok(_) => {
            let _ = within("channel.close", ch.close(200, "done")).await;
            true
        }
        Err(error) if reply_code(&error) == Some(404) => false,
        Err(error) => panic!("passive declare of queue {queue}: {error}"),
    }
}

/// Whether an exchange exists (passive declare on a channel of its own).
pub(crate) async fn exchange_exists(connection: &Connection, exchange: &str) -> bool {
    let ch = channel(connection).await;
    let result = within(
        "passive exchange.declare",
        ch.exchange_declare(
            exchange,
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    match result {
        Ok(()) => {
            let _ = within("channel.close", ch.close(200, "done")).await;
            true
        }
        Err(error) if reply_code(&error) == Some(404) => false,
        Err(error) => panic!("passive declare of exchange {exchange}: {error}"),
    }
}

/// Consumes exactly the `count` ready messages of `queue` on a fresh channel (manual acks,
/// bounded prefetch), acks them all, checks nothing else is left, closes the channel and returns
/// the deliveries in order.
pub(crate) async fn consume_all(
    connection: &Connection,
    queue: &str,
    count: usize,
) -> Vec<lapin::message::Delivery> {
    let ch = channel(connection).await;
    prefetch(&ch, 1000).await;
    let mut consumer = consume(&ch, queue).await;
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let delivery = next_delivery(&mut consumer).await;
        if (i + 1) % 500 == 0 || i + 1 == count {
            ack(&ch, delivery.delivery_tag, true).await;
        }
        deliveries.push(delivery);
    }
    within(
        "basic.cancel",
        ch.basic_cancel(consumer.tag().as_str(), Default::default()),
    )
    .await
    .expect("basic.cancel-ok");
    // Everything was acked on this channel before the close, so nothing is requeued by it.
    within("channel.close", ch.close(200, "done"))
        .await
        .expect("channel.close-ok");
    deliveries
}

/// The bodies of deliveries as strings.
pub(crate) fn bodies(deliveries: &[lapin::message::Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Segment files
// ---------------------------------------------------------------------------------------------

/// The record marker ("WRN1").
pub(crate) const MAGIC: [u8; 4] = *b"WRN1";
/// Bytes before each record payload: magic, length, CRC-32.
pub(crate) const FRAME_HEADER: usize = 12;

/// One framed record in a segment file.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// Where the frame (its magic) starts.
    pub(crate) offset: usize,
    /// Where its payload is.
    pub(crate) payload: Range<usize>,
}

/// The segment files of a data directory (`msgs/*.seg`), in name (= write) order.
pub(crate) fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("msgs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

/// Every frame of a segment, or a description of the first place where the data is not an
/// intact frame (the tests read segments after graceful stops, before and after damaging them).
pub(crate) fn frames(data: &[u8]) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let header = data
            .get(at..at + FRAME_HEADER)
            .ok_or_else(|| format!("truncated frame header at offset {at}"))?;
        if header[0..4] != MAGIC {
            return Err(format!("no record marker at offset {at}"));
        }
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let payload = at + FRAME_HEADER..at + FRAME_HEADER + length;
        let bytes = data
            .get(payload.clone())
            .ok_or_else(|| format!("truncated payload of the frame at offset {at}"))?;
        if crc32fast::hash(bytes) != crc {
            return Err(format!("checksum mismatch in the frame at offset {at}"));
        }
        frames.push(Frame {
            offset: at,
            payload: payload.clone(),
        });
        at = payload.end;
    }
    Ok(frames)
}

/// Where `needle` first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1 (rumqttc)
// ---------------------------------------------------------------------------------------------

type Control = Result<rumqttc::Event, rumqttc::ConnectionError>;

/// A connected MQTT 3.1.1 client whose event loop runs in a task that stops at the first
/// connection error (so rumqttc never reconnects behind the test's back).
pub(crate) struct Mqtt {
    client: rumqttc::AsyncClient,
    /// The CONNACK's session-present flag.
    pub(crate) session_present: bool,
    publishes: mpsc::UnboundedReceiver<rumqttc::Publish>,
    control: mpsc::UnboundedReceiver<Control>,
    task: JoinHandle<()>,
}

impl Mqtt {
    /// Connects (keep-alive 30 s) with the given clean-session flag; panics unless accepted.
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str, clean_session: bool) -> Mqtt {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(clean_session);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (ctl_tx, mut control) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                        let _ = pub_tx.send(publish);
                    }
                    Ok(event) => {
                        let _ = ctl_tx.send(Ok(event));
                    }
                    Err(error) => {
                        let _ = ctl_tx.send(Err(error));
                        break;
                    }
                }
            }
        });
        match within("CONNACK", control.recv()).await {
            Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(connack)))) => {
                assert_eq!(
                    connack.code,
                    rumqttc::ConnectReturnCode::Success,
                    "CONNACK of {client_id}"
                );
                Mqtt {
                    client,
                    session_present: connack.session_present,
                    publishes,
                    control,
                    task,
                }
            }
            other => panic!("MQTT connect of {client_id}: expected CONNACK, got {other:?}"),
        }
    }

    async fn next_control(&mut self, what: &str) -> rumqttc::Event {
        match within(what, self.control.recv()).await {
            Some(Ok(event)) => event,
            Some(Err(error)) => panic!("MQTT connection failed waiting for {what}: {error:?}"),
            None => panic!("MQTT event loop ended waiting for {what}"),
        }
    }

    /// Subscribes and asserts the broker granted `qos`.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: rumqttc::QoS) {
        within("subscribe request", self.client.subscribe(filter, qos))
            .await
            .expect("subscribe request queued");
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(suback)) =
                self.next_control("SUBACK").await
            {
                assert_eq!(
                    suback.return_codes,
                    vec![rumqttc::SubscribeReasonCode::Success(qos)],
                    "SUBACK for {filter:?}"
                );
                return;
            }
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK (one at a time, so it is this one's).
    pub(crate) async fn publish_qos1(&mut self, topic: &str, retain: bool, payload: &[u8]) {
        within(
            "publish request",
            self.client
                .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec()),
        )
        .await
        .expect("publish request queued");
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                self.next_control("PUBACK").await
            {
                return;
            }
        }
    }

    /// The next PUBLISH the broker delivers (QoS 1 ones are acked by rumqttc).
    pub(crate) async fn recv(&mut self) -> rumqttc::Publish {
        within("an incoming PUBLISH", self.publishes.recv())
            .await
            .expect("MQTT event loop ended waiting for a PUBLISH")
    }

    /// Sends DISCONNECT and waits until the broker closed the connection.
    pub(crate) async fn disconnect(mut self) {
        within("disconnect request", self.client.disconnect())
            .await
            .expect("disconnect request queued");
        while let Some(Ok(_)) = within("close after DISCONNECT", self.control.recv()).await {}
        self.task.abort();
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}
