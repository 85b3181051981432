//! Durability: what survives a restart, what does not, and what recovery does with
//! damaged segment files; plus bounded memory for a queue larger than memory (paging).
//!
//! Every test owns a data directory and starts a broker on it twice (or more): once to create
//! state, and again to recover it. Graceful restarts use the in-process broker
//! (`Broker::shutdown` flushes the store); the corruption tests and the paging test run the
//! `warren` binary so that they can read its log and its memory use. Crashes (`kill -9`) are in
//! `tests/crash.rs`.
//!
//! Environment: `PAGING_MB` (default 512) is how much the paging test publishes and
//! `PAGING_RSS_LIMIT_MB` (default 256) the resident set size it allows; `PAGING_MODE` is
//! `mixed` (default: even messages persistent, odd transient), `persistent` or `transient`.
//! `scripts/paging.sh` runs the full 2 GB / 512 MiB variant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durable_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_support::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary data directory")
}

// ---------------------------------------------------------------------------------------------
// (a) persistent messages and durable topology survive a graceful restart
// ---------------------------------------------------------------------------------------------

const GRACEFUL_COUNT: usize = 10_000;

fn graceful_properties(i: usize) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("seq".into(), AMQPValue::LongLongInt(i as i64));
    persistent()
        .with_content_type("text/plain".into())
        .with_message_id(format!("id-{i}").into())
        .with_correlation_id(format!("corr-{i}").into())
        .with_headers(headers)
}

/// (a) A durable exchange, a durable queue bound to it and 10,000 persistent messages published
/// through the exchange with publisher confirms survive a graceful restart: the topology is
/// back (a message published through the exchange after the restart is routed to the queue)
/// and exactly the 10,000 messages are there, in order, once each, with their properties, and
/// not marked redelivered (they never were delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_and_durable_topology_survive_graceful_restart() {
    let dir = tempdir();
    let exchange = unique("durable-exchange");
    let queue = unique("durable-queue");

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    declare_exchange(&ch, &exchange, ExchangeKind::Direct, true).await;
    declare_queue(&ch, &queue, true).await;
    bind(&ch, &queue, &exchange, "durable-key").await;
    let published = publish_confirmed(
        &ch,
        &exchange,
        "durable-key",
        (0..GRACEFUL_COUNT).map(|i| (format!("graceful-{i}").into_bytes(), graceful_properties(i))),
    )
    .await;
    assert_eq!(published, GRACEFUL_COUNT);
    assert_eq!(queue_count(&ch, &queue).await as usize, GRACEFUL_COUNT);
    close(connection).await;
    broker.shutdown().await;

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    assert!(
        exchange_exists(&connection, &exchange).await,
        "the durable exchange {exchange} is gone after a restart"
    );
    let ch = confirm_channel(&connection).await;
    assert_eq!(
        queue_count(&ch, &queue).await as usize,
        GRACEFUL_COUNT,
        "messages in the durable queue after a graceful restart"
    );
    let deliveries = consume_all(&connection, &queue, GRACEFUL_COUNT).await;
    for (i, delivery) in deliveries.iter().enumerate() {
        let body = String::from_utf8_lossy(&delivery.data);
        assert_eq!(body, format!("graceful-{i}"), "message #{i} after restart");
        assert!(!delivery.redelivered, "message #{i} marked redelivered");
        let p = &delivery.properties;
        assert_eq!(p.delivery_mode(), &Some(2), "delivery mode of #{i}");
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("text/plain"),
            "content type of #{i}"
        );
        assert_eq!(
            p.message_id().as_ref().map(|s| s.to_string()),
            Some(format!("id-{i}")),
            "message id of #{i}"
        );
        assert_eq!(
            p.correlation_id().as_ref().map(|s| s.to_string()),
            Some(format!("corr-{i}")),
            "correlation id of #{i}"
        );
        let seq = p
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("seq").cloned());
        assert_eq!(
            seq,
            Some(AMQPValue::LongLongInt(i as i64)),
            "header seq of #{i}"
        );
    }
    assert_eq!(
        queue_count(&ch, &queue).await,
        0,
        "left after consuming all"
    );

    // The binding survived too: a publish through the exchange reaches the queue.
    publish_confirmed(
        &ch,
        &exchange,
        "durable-key",
        [(b"after-restart".to_vec(), persistent())],
    )
    .await;
    let after = consume_all(&connection, &queue, 1).await;
    assert_eq!(bodies(&after), vec!["after-restart".to_string()]);
    assert_eq!(queue_count(&ch, &queue).await, 0);
    close(connection).await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// (b) transient messages and non-durable entities do not survive
// ---------------------------------------------------------------------------------------------

/// (b) Transient messages (delivery mode 1) in a durable queue, a non-durable queue (holding
/// persistent messages) and a non-durable exchange are gone after a graceful restart; the
/// persistent messages interleaved with the transient ones in the durable queue are all there,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_and_non_durable_entities_do_not_survive() {
    let dir = tempdir();
    let durable_queue = unique("durable-queue");
    let transient_queue = unique("non-durable-queue");
    let transient_exchange = unique("non-durable-exchange");

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    declare_queue(&ch, &durable_queue, true).await;
    declare_queue(&ch, &transient_queue, false).await;
    declare_exchange(&ch, &transient_exchange, ExchangeKind::Fanout, false).await;
    bind(&ch, &durable_queue, &transient_exchange, "").await;
    // Even: persistent, odd: transient, all into the durable queue.
    publish_confirmed(
        &ch,
        "",
        &durable_queue,
        (0..200u32).map(|i| {
            let properties = if i.is_multiple_of(2) {
                persistent()
            } else {
                transient()
            };
            (format!("mixed-{i}").into_bytes(), properties)
        }),
    )
    .await;
    // Persistent messages, but in a non-durable queue.
    publish_confirmed(
        &ch,
        "",
        &transient_queue,
        (0..100).map(|i| (format!("in-non-durable-{i}").into_bytes(), persistent())),
    )
    .await;
    assert_eq!(queue_count(&ch, &durable_queue).await, 200);
    assert_eq!(queue_count(&ch, &transient_queue).await, 100);
    close(connection).await;
    broker.shutdown().await;

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    assert!(
        !queue_exists(&connection, &transient_queue).await,
        "the non-durable queue {transient_queue} survived a restart"
    );
    assert!(
        !exchange_exists(&connection, &transient_exchange).await,
        "the non-durable exchange {transient_exchange} survived a restart"
    );
    let ch = channel(&connection).await;
    let count = queue_count(&ch, &durable_queue).await as usize;
    let expected: Vec<String> = (0..200u32)
        .filter(|i| i.is_multiple_of(2))
        .map(|i| format!("mixed-{i}"))
        .collect();
    // Consume what is there (not what we expect), so extra transient messages show up in
    // the comparison instead of being left behind.
    let got = bodies(&consume_all(&connection, &durable_queue, count).await);
    assert_eq!(
        got, expected,
        "after a restart the durable queue must hold exactly its persistent messages, in order"
    );
    assert_eq!(queue_count(&ch, &durable_queue).await, 0);
    close(connection).await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// (c) acknowledged messages do not come back; delivered-unacknowledged ones come back
//     redelivered
// ---------------------------------------------------------------------------------------------

const ACK_COUNT: usize = 10_000;

/// (c) Of 10,000 persistent messages all delivered to one consumer, the 5,000 even-numbered
/// ones are acked and the others left unacknowledged when the broker stops. After the restart
/// exactly the 5,000 odd-numbered ones are there, in order, all marked redelivered (they had
/// been delivered). They are then acked, and after another restart the queue is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_do_not_come_back() {
    let dir = tempdir();
    let queue = unique("acks");

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    declare_queue(&ch, &queue, true).await;
    publish_confirmed(
        &ch,
        "",
        &queue,
        (0..ACK_COUNT).map(|i| (format!("ack-{i}").into_bytes(), persistent())),
    )
    .await;
    // No prefetch limit: all 10,000 are delivered.
    let mut consumer = consume(&ch, &queue).await;
    let deliveries = take(&mut consumer, ACK_COUNT).await;
    for (i, delivery) in deliveries.iter().enumerate() {
        assert_eq!(
            String::from_utf8_lossy(&delivery.data),
            format!("ack-{i}"),
            "first delivery #{i}"
        );
        if i.is_multiple_of(2) {
            ack(&ch, delivery.delivery_tag, false).await;
        }
    }
    // A synchronous method on the same channel: the broker has processed every ack above when
    // this answers. Nothing is ready (the odd ones are unacked, not ready).
    assert_eq!(queue_count(&ch, &queue).await, 0);
    // Stop with the odd messages still unacknowledged by the open connection.
    broker.shutdown().await;
    drop(consumer);
    drop(connection);

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = channel(&connection).await;
    let count = queue_count(&ch, &queue).await as usize;
    let recovered = consume_all(&connection, &queue, count).await;
    let expected: Vec<String> = (0..ACK_COUNT)
        .filter(|i| !i.is_multiple_of(2))
        .map(|i| format!("ack-{i}"))
        .collect();
    let got = bodies(&recovered);
    assert_eq!(
        got.len(),
        expected.len(),
        "messages after acking {} of {ACK_COUNT} and restarting",
        ACK_COUNT / 2
    );
    assert_eq!(got, expected, "exactly the unacked messages, in order");
    let not_redelivered: Vec<&String> = recovered
        .iter()
        .zip(&got)
        .filter(|(d, _)| !d.redelivered)
        .map(|(_, body)| body)
        .collect();
    assert!(
        not_redelivered.is_empty(),
        "{} delivered-but-unacked messages came back without redelivered=true, e.g. {:?}",
        not_redelivered.len(),
        not_redelivered.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(queue_count(&ch, &queue).await, 0);
    close(connection).await;
    broker.shutdown().await;

    // The acks of recovered messages stick too.
    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = channel(&connection).await;
    assert_eq!(
        queue_count(&ch, &queue).await,
        0,
        "messages acked after a restart came back after another restart"
    );
    close(connection).await;
    broker.shutdown().await;
}

/// (c) With prefetch 3, messages 0, 1, 2 of 10 are delivered; the consumer is cancelled (so
/// nothing more is delivered), 0 is acked, 1 and 2 stay unacknowledged when the broker stops.
/// After the restart the queue holds 1..9 in order: 1 and 2 redelivered=true, 3..9
/// redelivered=false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_unacked_messages_come_back_redelivered() {
    let dir = tempdir();
    let queue = unique("redelivered");

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    declare_queue(&ch, &queue, true).await;
    publish_confirmed(
        &ch,
        "",
        &queue,
        (0..10).map(|i| (format!("r-{i}").into_bytes(), persistent())),
    )
    .await;
    prefetch(&ch, 3).await;
    let mut consumer = consume(&ch, &queue).await;
    let delivered = take(&mut consumer, 3).await;
    assert_eq!(bodies(&delivered), vec!["r-0", "r-1", "r-2"]);
    within(
        "basic.cancel",
        ch.basic_cancel(consumer.tag().as_str(), Default::default()),
    )
    .await
    .expect("basic.cancel-ok");
    ack(&ch, delivered[0].delivery_tag, false).await;
    // Synchronous round trip after the ack: 7 ready, 2 unacked.
    assert_eq!(queue_count(&ch, &queue).await, 7);
    broker.shutdown().await;
    drop(consumer);
    drop(connection);

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = channel(&connection).await;
    let count = queue_count(&ch, &queue).await as usize;
    let recovered = consume_all(&connection, &queue, count).await;
    let got: Vec<(String, bool)> = recovered
        .iter()
        .map(|d| (String::from_utf8_lossy(&d.data).into_owned(), d.redelivered))
        .collect();
    let expected: Vec<(String, bool)> = (1..10).map(|i| (format!("r-{i}"), i <= 2)).collect();
    assert_eq!(
        got, expected,
        "(body, redelivered) after a restart: the acked message is gone, the delivered-unacked \
         ones come back redelivered, the never-delivered ones not"
    );
    close(connection).await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// (d) MQTT persistent session and retained messages survive a restart
// ---------------------------------------------------------------------------------------------

/// (d) A persistent MQTT 3.1.1 session (clean session = 0) subscribed at QoS 1 goes offline;
/// 100 QoS 1 messages are published to it and 10 retained messages to other topics. After a
/// graceful restart the session reconnects (session present) and gets the 100 messages in
/// order, and nothing else before a marker published after the reconnect (so its
/// subscription survived too); a fresh subscriber to a `#` filter gets the 10 retained
/// messages, flagged retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_persistent_session_and_retained_messages_survive_restart() {
    let dir = tempdir();
    let prefix = format!("warren-test/{}", unique_mqtt("durable-mqtt"));
    let queued_filter = format!("{prefix}/queued/#");
    let queued_topic = format!("{prefix}/queued/data");
    let retained_filter = format!("{prefix}/retained/#");
    let session_id = unique_mqtt("session");
    let publisher_id = unique_mqtt("publisher");
    let qos1 = rumqttc::QoS::AtLeastOnce;

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let mut session = Mqtt::connect(broker.mqtt_addr(), &session_id, false).await;
    session.subscribe(&queued_filter, qos1).await;
    session.disconnect().await;

    let mut publisher = Mqtt::connect(broker.mqtt_addr(), &publisher_id, true).await;
    for i in 0..100 {
        publisher
            .publish_qos1(&queued_topic, false, format!("queued-{i}").as_bytes())
            .await;
    }
    for i in 0..10 {
        publisher
            .publish_qos1(
                &format!("{prefix}/retained/{i}"),
                true,
                format!("retained-{i}").as_bytes(),
            )
            .await;
    }
    publisher.disconnect().await;
    broker.shutdown().await;

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let mut session = Mqtt::connect(broker.mqtt_addr(), &session_id, false).await;
    assert!(
        session.session_present,
        "CONNACK session present after a restart: the persistent session was lost"
    );
    let mut publisher = Mqtt::connect(broker.mqtt_addr(), &publisher_id, true).await;
    let mut received = Vec::new();
    for _ in 0..100 {
        let publish = session.recv().await;
        assert_eq!(publish.topic, queued_topic);
        assert_eq!(publish.qos, qos1, "QoS of a queued message");
        received.push(String::from_utf8_lossy(&publish.payload).into_owned());
    }
    let expected: Vec<String> = (0..100).map(|i| format!("queued-{i}")).collect();
    assert_eq!(received, expected, "queued QoS 1 messages after a restart");
    publisher
        .publish_qos1(&queued_topic, false, b"marker-after-restart")
        .await;
    let next = session.recv().await;
    assert_eq!(
        String::from_utf8_lossy(&next.payload),
        "marker-after-restart",
        "the next message after the 100 queued ones"
    );
    session.disconnect().await;

    let fresh_id = unique_mqtt("fresh");
    let mut fresh = Mqtt::connect(broker.mqtt_addr(), &fresh_id, true).await;
    fresh.subscribe(&retained_filter, qos1).await;
    let mut retained = BTreeMap::new();
    for _ in 0..10 {
        let publish = fresh.recv().await;
        assert!(publish.retain, "retain flag of {publish:?}");
        retained.insert(
            publish.topic.clone(),
            String::from_utf8_lossy(&publish.payload).into_owned(),
        );
    }
    let expected: BTreeMap<String, String> = (0..10)
        .map(|i| (format!("{prefix}/retained/{i}"), format!("retained-{i}")))
        .collect();
    assert_eq!(retained, expected, "retained messages after a restart");
    publisher
        .publish_qos1(&format!("{prefix}/retained/marker"), false, b"marker")
        .await;
    let next = fresh.recv().await;
    assert_eq!(
        (next.topic.as_str(), &next.payload[..]),
        (format!("{prefix}/retained/marker").as_str(), &b"marker"[..]),
        "the next message after the 10 retained ones"
    );
    fresh.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Damaged segment files
// ---------------------------------------------------------------------------------------------

const DAMAGE_COUNT: usize = 1000;

/// The body of message `seq` in the damage tests: a marker that identifies its record in a
/// segment file, padded so every record is a few hundred bytes.
fn damage_body(seq: usize) -> Vec<u8> {
    let mut body = format!("damage-{seq:06}|").into_bytes();
    body.resize(200, b'a' + (seq % 26) as u8);
    body
}

fn damage_seq(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(body.get(..14)?).ok()?;
    text.strip_prefix("damage-")?
        .strip_suffix('|')?
        .parse()
        .ok()
}

/// A record of a segment file and the message (if any) it carries.
struct Located {
    path: std::path::PathBuf,
    frame: Frame,
    seq: Option<usize>,
}

/// Every record of every segment, with the damage-test message each one carries.
fn locate_records(data_dir: &Path) -> Vec<Located> {
    let mut located = Vec::new();
    for path in segment_files(data_dir) {
        let data = std::fs::read(&path).expect("read a segment");
        let intact =
            frames(&data).unwrap_or_else(|e| panic!("{} before damaging it: {e}", path.display()));
        for frame in intact {
            let payload = &data[frame.payload.clone()];
            let seq = find(payload, b"damage-").and_then(|at| damage_seq(&payload[at..]));
            located.push(Located {
                path: path.clone(),
                frame,
                seq,
            });
        }
    }
    located
}

/// Starts the binary on a fresh data directory, publishes [`DAMAGE_COUNT`] persistent messages
/// to a new durable queue, stops it with SIGTERM and returns the queue and the records.
async fn prepare_damage(data_dir: &Path) -> (String, Vec<Located>) {
    let queue = unique("damage");
    let broker = TestBroker::options()
        .data_dir(data_dir)
        .process()
        .start()
        .await;
    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    declare_queue(&ch, &queue, true).await;
    publish_confirmed(
        &ch,
        "",
        &queue,
        (0..DAMAGE_COUNT).map(|seq| (damage_body(seq), persistent())),
    )
    .await;
    close(connection).await;
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "warren exits successfully on SIGTERM, got {status}; log:\n{}",
        log.text()
    );
    let records = locate_records(data_dir);
    let seqs: Vec<usize> = records.iter().filter_map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (0..DAMAGE_COUNT).collect::<Vec<_>>(),
        "the segment files hold one record per message, in publish order"
    );
    (queue, records)
}

/// Whether `line` is a warning or error that names `file` and the number `offset`.
fn reports(line: &str, file: &str, offset: usize) -> bool {
    let offset = offset.to_string();
    (line.contains("WARN") || line.contains("ERROR"))
        && line.contains(file)
        && line
            .split(|c: char| !c.is_ascii_digit())
            .any(|number| number == offset)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

fn flip(path: &Path, positions: impl IntoIterator<Item = usize>) {
    let mut data = std::fs::read(path).expect("read a segment");
    for at in positions {
        data[at] ^= 0xFF;
    }
    std::fs::write(path, data).expect("write the damaged segment");
}

/// Consumes what the restarted broker has in `queue` and returns the damage-test sequence
/// numbers, in order.
async fn consume_seqs(broker: &TestBroker, queue: &str) -> Vec<usize> {
    let connection = connect(broker.amqp_addr()).await;
    let ch = channel(&connection).await;
    let count = queue_count(&ch, queue).await as usize;
    let deliveries = consume_all(&connection, queue, count).await;
    let seqs: Vec<usize> = deliveries
        .iter()
        .map(|d| {
            damage_seq(&d.data).unwrap_or_else(|| {
                panic!(
                    "a recovered message has a foreign body: {:?}",
                    String::from_utf8_lossy(&d.data)
                )
            })
        })
        .collect();
    for (delivery, seq) in deliveries.iter().zip(&seqs) {
        assert_eq!(delivery.data, damage_body(*seq), "body of message {seq}");
    }
    assert_eq!(queue_count(&ch, queue).await, 0);
    close(connection).await;
    seqs
}

/// After a restart that dropped damaged records, the store keeps working: 10 more persistent
/// messages survive another (graceful) restart.
async fn store_still_works(data_dir: &Path, broker: TestBroker, queue: &str) {
    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    publish_confirmed(
        &ch,
        "",
        queue,
        (DAMAGE_COUNT..DAMAGE_COUNT + 10).map(|seq| (damage_body(seq), persistent())),
    )
    .await;
    close(connection).await;
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exit: {status}; log:\n{}",
        log.text()
    );
    let broker = TestBroker::options()
        .data_dir(data_dir)
        .process()
        .start()
        .await;
    assert_eq!(
        consume_seqs(&broker, queue).await,
        (DAMAGE_COUNT..DAMAGE_COUNT + 10).collect::<Vec<_>>(),
        "messages published after recovering from damage, after another restart"
    );
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exit: {status}; log:\n{}",
        log.text()
    );
}

/// Corruption: bytes flipped in the last record of the last segment and one byte flipped in
/// the middle of the payload of a record in the middle. The broker starts, logs each damaged
/// record (a warning naming the segment file and the record's offset), and serves exactly the
/// undamaged messages, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_are_dropped_and_the_rest_served() {
    let dir = tempdir();
    let (queue, records) = prepare_damage(dir.path()).await;

    let tail = records.last().expect("records were written");
    let middle = records
        .iter()
        .find(|r| r.seq == Some(DAMAGE_COUNT / 2))
        .expect("the middle message's record");
    assert_eq!(
        tail.seq,
        Some(DAMAGE_COUNT - 1),
        "the last record written is the last message"
    );
    // (a) The last 4 bytes of the tail record (its body's end).
    flip(
        &tail.path,
        (tail.frame.payload.end - 4)..tail.frame.payload.end,
    );
    // (b) One byte in the middle of the middle record's payload.
    let payload = &middle.frame.payload;
    flip(
        &middle.path,
        [payload.start + (payload.end - payload.start) / 2],
    );

    let broker = TestBroker::options()
        .data_dir(dir.path())
        .process()
        .start()
        .await;
    let lines = broker.log().lines();
    for (what, record) in [("tail", tail), ("middle", middle)] {
        let file = file_name(&record.path);
        assert!(
            lines
                .iter()
                .any(|line| reports(line, &file, record.frame.offset)),
            "no warning names {file} and offset {} of the corrupted {what} record; log:\n{}",
            record.frame.offset,
            lines.join("\n")
        );
    }
    let expected: Vec<usize> = (0..DAMAGE_COUNT)
        .filter(|seq| *seq != DAMAGE_COUNT / 2 && *seq != DAMAGE_COUNT - 1)
        .collect();
    let got = consume_seqs(&broker, &queue).await;
    let missing: BTreeSet<usize> = (0..DAMAGE_COUNT).filter(|s| !got.contains(s)).collect();
    assert_eq!(
        got,
        expected,
        "after corrupting messages {} and {}: missing {missing:?}",
        DAMAGE_COUNT / 2,
        DAMAGE_COUNT - 1
    );
    store_still_works(dir.path(), broker, &queue).await;
}

/// Torn tail (what a crash mid-write leaves): the last segment is cut in the middle of its
/// last record. The broker starts, logs the dropped tail, cuts it off the file (after a
/// graceful stop every segment consists of intact records only) and serves every other
/// message, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_and_the_rest_served() {
    let dir = tempdir();
    let (queue, records) = prepare_damage(dir.path()).await;
    let tail = records.last().expect("records were written");
    assert_eq!(tail.seq, Some(DAMAGE_COUNT - 1));
    let cut = tail.frame.payload.start + (tail.frame.payload.end - tail.frame.payload.start) / 2;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&tail.path)
        .expect("open the last segment");
    file.set_len(cut as u64).expect("truncate the last segment");
    drop(file);

    let broker = TestBroker::options()
        .data_dir(dir.path())
        .process()
        .start()
        .await;
    let lines = broker.log().lines();
    let name = file_name(&tail.path);
    assert!(
        lines
            .iter()
            .any(|line| reports(line, &name, tail.frame.offset)),
        "no warning names {name} and offset {} of the torn record; log:\n{}",
        tail.frame.offset,
        lines.join("\n")
    );
    // Stop before consuming, then check that no garbage was left in any segment.
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exit: {status}; log:\n{}",
        log.text()
    );
    for path in segment_files(dir.path()) {
        let data = std::fs::read(&path).expect("read a segment");
        if let Err(damage) = frames(&data) {
            panic!(
                "{} still holds damaged data after recovery and a graceful stop (torn tail \
                 not cut): {damage}",
                path.display()
            );
        }
    }

    let broker = TestBroker::options()
        .data_dir(dir.path())
        .process()
        .start()
        .await;
    let got = consume_seqs(&broker, &queue).await;
    assert_eq!(
        got,
        (0..DAMAGE_COUNT - 1).collect::<Vec<_>>(),
        "every message but the torn one, in order"
    );
    store_still_works(dir.path(), broker, &queue).await;
}

// ---------------------------------------------------------------------------------------------
// Paging: a queue larger than the memory budget
// ---------------------------------------------------------------------------------------------

const PAGING_BODY: usize = 64 * 1024;

/// The body of paging message `seq`: seq (u64 BE) | CRC-32 of the rest (u32 BE) | bytes from
/// a generator seeded with seq.
fn paging_body(seq: u64) -> Vec<u8> {
    let mut body = vec![0u8; PAGING_BODY];
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in body[12..].chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let crc = crc32fast::hash(&body[12..]);
    body[..8].copy_from_slice(&seq.to_be_bytes());
    body[8..12].copy_from_slice(&crc.to_be_bytes());
    body
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Paging: `PAGING_MB` (default 512) MiB of 64 KiB messages are published with confirms to one
/// durable queue with no consumer, against the binary started with default settings. The
/// broker's resident set size, sampled from /proc while publishing and while consuming, stays
/// under `PAGING_RSS_LIMIT_MB` (default 256) MiB; then every message is consumed and checked
/// (sequence number, checksum and the full contents), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging() {
    let total_mb = env_u64("PAGING_MB", 512);
    let limit = env_u64("PAGING_RSS_LIMIT_MB", 256) * 1024 * 1024;
    let mode = std::env::var("PAGING_MODE").unwrap_or_else(|_| "mixed".to_string());
    let properties = |seq: u64| match mode.as_str() {
        "persistent" => persistent(),
        "transient" => transient(),
        "mixed" if seq.is_multiple_of(2) => persistent(),
        "mixed" => transient(),
        other => panic!("PAGING_MODE={other:?}: expected mixed, persistent or transient"),
    };
    let count = total_mb * 1024 * 1024 / PAGING_BODY as u64;
    let dir = tempdir();
    let queue = unique("paging");
    let broker = TestBroker::options()
        .data_dir(dir.path())
        .process()
        .start()
        .await;
    let pid = broker.pid();
    let baseline = broker.rss_bytes().unwrap_or(0);

    // Sample the broker's RSS every 20 ms; peaks per phase (0 = publishing, 1 = consuming).
    let peaks = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let consuming = Arc::new(AtomicBool::new(false));
    let sampler = {
        let peaks = peaks.clone();
        let consuming = consuming.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                let Some(rss) = rss_bytes(pid) else { return };
                let phase = usize::from(consuming.load(Ordering::Relaxed));
                peaks[phase].fetch_max(rss, Ordering::Relaxed);
            }
        })
    };

    let connection = connect(broker.amqp_addr()).await;
    let ch = confirm_channel(&connection).await;
    declare_queue(&ch, &queue, true).await;
    let started = Instant::now();
    // A small window (4 MiB in flight), so unconfirmed messages held by the broker do not
    // count against its memory budget.
    publish_confirmed_window(
        &ch,
        "",
        &queue,
        (0..count).map(|seq| (paging_body(seq), properties(seq))),
        64,
    )
    .await;
    let published_in = started.elapsed();
    let after_publish = broker.rss_bytes().unwrap_or(0);
    peaks[0].fetch_max(after_publish, Ordering::Relaxed);
    assert_eq!(
        u64::from(queue_count(&ch, &queue).await),
        count,
        "messages queued"
    );

    consuming.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let consumer_ch = channel(&connection).await;
    prefetch(&consumer_ch, 64).await;
    let mut consumer = consume(&consumer_ch, &queue).await;
    for seq in 0..count {
        let delivery = next_delivery(&mut consumer).await;
        let data = &delivery.data;
        assert_eq!(data.len(), PAGING_BODY, "size of message {seq}");
        let got_seq = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
        assert_eq!(got_seq, seq, "messages out of order or missing");
        let crc = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
        assert_eq!(
            crc32fast::hash(&data[12..]),
            crc,
            "checksum of message {seq}"
        );
        assert!(
            data[..] == paging_body(seq)[..],
            "contents of message {seq}"
        );
        if (seq + 1) % 32 == 0 || seq + 1 == count {
            ack(&consumer_ch, delivery.delivery_tag, true).await;
        }
    }
    let consumed_in = started.elapsed();
    assert_eq!(queue_count(&ch, &queue).await, 0, "left after consuming");
    peaks[1].fetch_max(broker.rss_bytes().unwrap_or(0), Ordering::Relaxed);
    sampler.abort();
    close(connection).await;
    let (status, log) = broker.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exit: {status}; log:\n{}",
        log.text()
    );

    let (publish_peak, consume_peak) = (
        peaks[0].load(Ordering::Relaxed),
        peaks[1].load(Ordering::Relaxed),
    );
    println!(
        "paging: {count} x 64 KiB ({total_mb} MiB, mode {mode}) published in {published_in:.1?}, \
         consumed in {consumed_in:.1?}; broker RSS at start {:.0} MiB, peak while publishing \
         {:.0} MiB, after publishing {:.0} MiB, peak while consuming {:.0} MiB (limit {:.0} MiB)",
        mib(baseline),
        mib(publish_peak),
        mib(after_publish),
        mib(consume_peak),
        mib(limit),
    );
    assert!(
        publish_peak < limit && consume_peak < limit,
        "broker RSS exceeded {:.0} MiB with a {total_mb} MiB queue: peak {:.0} MiB while \
         publishing, {:.0} MiB while consuming: memory is not bounded by paging",
        mib(limit),
        mib(publish_peak),
        mib(consume_peak),
    );
}
