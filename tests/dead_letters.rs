//! Message lifetimes and dead lettering as RabbitMQ has them: `x-message-ttl` and per-message
//! `expiration` (expired messages leave the queue at once, no consumer needed, and go to the
//! dead-letter exchange when there is one), `x-expires`, reasons `rejected`, `expired`,
//! `maxlen` and `delivery_limit`, the `x-death` header byte for byte as Debian's RabbitMQ 3.10
//! writes it (compared against captures in `tests/fixtures/rabbitmq-x-death/`), cycles dropped,
//! policies applying the same keys, durable dead letters, and the queue arguments warren
//! refuses with 406 rather than ignore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{within, TestBroker};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use warren_amqp::{ContentHeader, FieldTable as WireTable, FieldValue};

fn arguments(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Declare arguments dead-lettering through the default exchange into `queue`, then `more`.
fn dead_lettering_to(
    queue: &str,
    more: &[(&'static str, AMQPValue)],
) -> Vec<(&'static str, AMQPValue)> {
    let mut entries = vec![
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text(queue)),
    ];
    entries.extend(more.iter().cloned());
    entries
}

async fn open(broker: &TestBroker) -> (Connection, Channel) {
    let connection = Connection::connect(&broker.amqp_uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

async fn declare(channel: &Channel, name: &str, entries: &[(&str, AMQPValue)]) {
    channel
        .queue_declare(name, QueueDeclareOptions::default(), arguments(entries))
        .await
        .unwrap();
}

async fn declare_durable(channel: &Channel, name: &str, entries: &[(&str, AMQPValue)]) {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name, options, arguments(entries))
        .await
        .unwrap();
}

async fn publish(channel: &Channel, queue: &str, body: &str, properties: BasicProperties) {
    channel
        .basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Ready messages, from a passive declare.
async fn depth(channel: &Channel, queue: &str) -> u32 {
    common::queue_counts(channel, queue).await.0
}

/// Waits (bounded) until the queue holds `count` ready messages.
async fn wait_depth(channel: &Channel, queue: &str, count: u32) {
    within(&format!("{queue} to hold {count} messages"), async {
        while depth(channel, queue).await != count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn get(channel: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    channel
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
}

fn death_field<'a>(death: &'a AMQPValue, key: &str) -> &'a AMQPValue {
    let AMQPValue::FieldTable(table) = death else {
        panic!("x-death entry is not a table: {death:?}");
    };
    table
        .inner()
        .get(key)
        .unwrap_or_else(|| panic!("x-death entry has no {key}: {table:?}"))
}

fn deaths(message: &lapin::message::BasicGetMessage) -> Vec<AMQPValue> {
    let headers = message.delivery.properties.headers().as_ref().unwrap();
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().to_vec(),
        other => panic!("no x-death array: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_leave_the_queue_at_once_and_are_dead_lettered() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    declare(&channel, "ttl-dead", &[]).await;
    declare(
        &channel,
        "ttl-src",
        &dead_lettering_to("ttl-dead", &[("x-message-ttl", AMQPValue::LongInt(200))]),
    )
    .await;
    // One per-message expiration shorter than the queue's TTL, one without.
    let short = BasicProperties::default().with_expiration(ShortString::from("50"));
    publish(&channel, "ttl-src", "short", short).await;
    publish(&channel, "ttl-src", "queue-ttl", BasicProperties::default()).await;
    assert_eq!(depth(&channel, "ttl-src").await, 2);
    // Nobody consumes ttl-src: the counts drop because of the timer alone.
    wait_depth(&channel, "ttl-src", 0).await;
    wait_depth(&channel, "ttl-dead", 2).await;
    let first = get(&channel, "ttl-dead").await.unwrap();
    assert_eq!(first.delivery.data, b"short");
    let history = deaths(&first);
    assert_eq!(history.len(), 1);
    assert_eq!(death_field(&history[0], "reason"), &text("expired"));
    assert_eq!(death_field(&history[0], "queue"), &text("ttl-src"));
    assert_eq!(
        death_field(&history[0], "count"),
        &AMQPValue::LongLongInt(1)
    );
    assert_eq!(death_field(&history[0], "original-expiration"), &text("50"));
    assert!(matches!(
        death_field(&history[0], "time"),
        AMQPValue::Timestamp(_)
    ));
    // The expiration is gone from the dead letter, so it cannot expire again.
    assert_eq!(first.delivery.properties.expiration(), &None);
    let second = get(&channel, "ttl-dead").await.unwrap();
    assert_eq!(second.delivery.data, b"queue-ttl");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_waiting_consumer_is_delivered_even_with_ttl_zero() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    declare(
        &channel,
        "ttl-zero",
        &[("x-message-ttl", AMQPValue::LongInt(0))],
    )
    .await;
    // Without a consumer the message dies on arrival.
    publish(&channel, "ttl-zero", "lost", BasicProperties::default()).await;
    wait_depth(&channel, "ttl-zero", 0).await;
    let mut consumer = common::consume(&channel, "ttl-zero").await;
    publish(&channel, "ttl-zero", "kept", BasicProperties::default()).await;
    let delivery = common::next_delivery(&mut consumer).await;
    assert_eq!(delivery.data, b"kept");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_nacked_messages_are_dead_lettered_and_requeued_ones_are_not() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    declare(&channel, "rej-dead", &[]).await;
    declare(&channel, "rej-src", &dead_lettering_to("rej-dead", &[])).await;
    for body in ["a", "b", "c"] {
        publish(&channel, "rej-src", body, BasicProperties::default()).await;
    }
    let get_acked = |channel: Channel| async move {
        channel
            .basic_get("rej-src", BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap()
    };
    let a = get_acked(channel.clone()).await;
    a.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let b = get_acked(channel.clone()).await;
    b.delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
    // b is back at the head; nack it (and c) for good.
    let b = get_acked(channel.clone()).await;
    let c = get_acked(channel.clone()).await;
    assert_eq!(b.delivery.data, b"b");
    c.delivery
        .acker
        .nack(BasicNackOptions {
            requeue: false,
            multiple: true,
        })
        .await
        .unwrap();
    wait_depth(&channel, "rej-dead", 3).await;
    let bodies = common::drain(&channel, "rej-dead").await;
    assert_eq!(bodies, ["a", "b", "c"]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_dead_letters_dropped_heads_and_refused_publishes() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare(&channel, "len-dead", &[]).await;
    declare(
        &channel,
        "len-head",
        &dead_lettering_to("len-dead", &[("x-max-length", AMQPValue::LongInt(2))]),
    )
    .await;
    declare(
        &channel,
        "len-reject",
        &dead_lettering_to(
            "len-dead",
            &[
                ("x-max-length", AMQPValue::LongInt(1)),
                ("x-overflow", text("reject-publish-dlx")),
            ],
        ),
    )
    .await;
    for body in ["h1", "h2", "h3"] {
        publish(&channel, "len-head", body, BasicProperties::default()).await;
    }
    let confirmations = [
        ("r1", true),
        ("r2", false), // refused: the publisher gets basic.nack and the message is dead-lettered
    ];
    for (body, acked) in confirmations {
        let confirmation = channel
            .basic_publish(
                "",
                "len-reject",
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(confirmation.is_ack(), acked, "{body}");
    }
    wait_depth(&channel, "len-dead", 2).await;
    let first = get(&channel, "len-dead").await.unwrap();
    assert_eq!(first.delivery.data, b"h1");
    assert_eq!(death_field(&deaths(&first)[0], "reason"), &text("maxlen"));
    let second = get(&channel, "len-dead").await.unwrap();
    assert_eq!(second.delivery.data, b"r2");
    assert_eq!(death_field(&deaths(&second)[0], "reason"), &text("maxlen"));
    assert_eq!(common::drain(&channel, "len-reject").await, ["r1"]);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_cycle_is_dropped_but_a_rejection_cycle_is_not() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    // A queue dead-lettering into itself: an expired message would come back for ever.
    declare(
        &channel,
        "cycle",
        &[
            ("x-message-ttl", AMQPValue::LongInt(30)),
            ("x-dead-letter-exchange", text("")),
        ],
    )
    .await;
    publish(&channel, "cycle", "spin", BasicProperties::default()).await;
    wait_depth(&channel, "cycle", 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        depth(&channel, "cycle").await,
        0,
        "the cycle was not dropped"
    );
    // A rejection back into the same queue is a client's choice: it stays, with count 2 after
    // two rejections.
    declare(&channel, "again", &[("x-dead-letter-exchange", text(""))]).await;
    publish(&channel, "again", "twice", BasicProperties::default()).await;
    for _ in 0..2 {
        let message = channel
            .basic_get("again", BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        message
            .delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        wait_depth(&channel, "again", 1).await;
    }
    let message = get(&channel, "again").await.unwrap();
    let history = deaths(&message);
    assert_eq!(history.len(), 1);
    assert_eq!(
        death_field(&history[0], "count"),
        &AMQPValue::LongLongInt(2)
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_queue_goes_after_its_x_expires_and_a_used_one_stays() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    declare(
        &channel,
        "expires-idle",
        &[("x-expires", AMQPValue::LongInt(150))],
    )
    .await;
    declare(
        &channel,
        "expires-used",
        &[("x-expires", AMQPValue::LongInt(150))],
    )
    .await;
    let consumer = common::consume(&channel, "expires-used").await;
    within("the idle queue to be deleted", async {
        loop {
            let probe = broker.amqp_uri();
            let connection = Connection::connect(&probe, ConnectionProperties::default())
                .await
                .unwrap();
            let probe_channel = connection.create_channel().await.unwrap();
            let gone = probe_channel
                .queue_declare(
                    "expires-idle",
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .is_err();
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The queue with a consumer is in use however long it idles.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(depth(&channel, "expires-used").await, 0);
    drop(consumer);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_dead_letters_past_its_delivery_limit() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    declare(&channel, "limit-dead", &[]).await;
    declare_durable(
        &channel,
        "limit-src",
        &dead_lettering_to(
            "limit-dead",
            &[
                ("x-queue-type", text("quorum")),
                ("x-delivery-limit", AMQPValue::LongInt(1)),
            ],
        ),
    )
    .await;
    publish(&channel, "limit-src", "poison", BasicProperties::default()).await;
    // Delivered, returned (1: within the limit), delivered again, returned (2: over it).
    for _ in 0..2 {
        let message = channel
            .basic_get("limit-src", BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        message
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
    }
    wait_depth(&channel, "limit-dead", 1).await;
    assert_eq!(depth(&channel, "limit-src").await, 0);
    let message = get(&channel, "limit-dead").await.unwrap();
    assert_eq!(
        death_field(&deaths(&message)[0], "reason"),
        &text("delivery_limit")
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_applies_ttl_and_dead_lettering_to_matching_queues() {
    let broker = TestBroker::start().await;
    let core = broker.in_process().core().clone();
    core.put_policy(warren::core::PolicyDefinition {
        vhost: "/".into(),
        name: "expire-fast".into(),
        pattern: "^policed\\.".into(),
        apply_to: "queues".into(),
        priority: 0,
        definition: serde_json::from_str(
            r#"{"message-ttl": 50, "dead-letter-exchange": "", "dead-letter-routing-key": "policed-dead"}"#,
        )
        .unwrap(),
    })
    .unwrap();
    let (_connection, channel) = open(&broker).await;
    declare(&channel, "policed-dead", &[]).await;
    declare(&channel, "policed.src", &[]).await;
    publish(
        &channel,
        "policed.src",
        "by policy",
        BasicProperties::default(),
    )
    .await;
    wait_depth(&channel, "policed-dead", 1).await;
    assert_eq!(depth(&channel, "policed.src").await, 0);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_dead_letter_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let (connection, channel) = open(&broker).await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_durable(&channel, "durable-dead", &[]).await;
    declare_durable(
        &channel,
        "durable-src",
        &dead_lettering_to("durable-dead", &[("x-message-ttl", AMQPValue::LongInt(50))]),
    )
    .await;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    publish(&channel, "durable-src", "kept", persistent).await;
    wait_depth(&channel, "durable-dead", 1).await;
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let (_connection, channel) = open(&broker).await;
    assert_eq!(depth(&channel, "durable-src").await, 0);
    let message = get(&channel, "durable-dead").await.unwrap();
    assert_eq!(message.delivery.data, b"kept");
    assert_eq!(
        death_field(&deaths(&message)[0], "reason"),
        &text("expired")
    );
    broker.shutdown().await;
}

/// Declares `name` with `entries` on a fresh channel; the 406 text if refused.
async fn refused(
    connection: &Connection,
    name: &str,
    options: QueueDeclareOptions,
    entries: &[(&str, AMQPValue)],
) -> Option<String> {
    let channel = connection.create_channel().await.unwrap();
    match channel
        .queue_declare(name, options, arguments(entries))
        .await
    {
        Ok(_) => None,
        Err(lapin::Error::ProtocolError(error)) => {
            assert_eq!(error.get_id(), 406, "{error}");
            Some(error.get_message().to_string())
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_arguments_are_acted_on_or_refused_never_ignored() {
    let broker = TestBroker::start().await;
    let (connection, _channel) = open(&broker).await;
    let plain = QueueDeclareOptions::default();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let stream = refused(
        &connection,
        "s",
        durable,
        &[("x-queue-type", text("stream"))],
    )
    .await;
    assert!(stream.unwrap().contains("x-queue-type"));
    let priority = refused(
        &connection,
        "p",
        plain,
        &[("x-max-priority", AMQPValue::LongInt(256))],
    )
    .await;
    assert!(priority.unwrap().contains("x-max-priority"));
    let ttl = refused(
        &connection,
        "t",
        plain,
        &[("x-message-ttl", AMQPValue::LongInt(-1))],
    )
    .await;
    assert!(ttl.unwrap().contains("x-message-ttl"));
    let expires = refused(
        &connection,
        "e",
        plain,
        &[("x-expires", AMQPValue::LongInt(0))],
    )
    .await;
    assert!(expires.unwrap().contains("x-expires"));
    let overflow = refused(
        &connection,
        "o",
        plain,
        &[("x-overflow", text("drop-tail"))],
    )
    .await;
    assert!(overflow.unwrap().contains("x-overflow"));
    let limit = refused(
        &connection,
        "l",
        plain,
        &[("x-delivery-limit", AMQPValue::LongInt(3))],
    )
    .await;
    assert!(limit.unwrap().contains("x-delivery-limit"));
    let routing_key = refused(
        &connection,
        "k",
        plain,
        &[("x-dead-letter-routing-key", text("x"))],
    )
    .await;
    assert!(routing_key.unwrap().contains("x-dead-letter-routing-key"));
    // Quorum rules: durable only, never exclusive or auto-delete.
    let quorum = [("x-queue-type", text("quorum"))];
    assert!(refused(&connection, "q1", plain, &quorum)
        .await
        .unwrap()
        .contains("non-durable"));
    let exclusive = QueueDeclareOptions {
        durable: true,
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    assert!(refused(&connection, "q2", exclusive, &quorum)
        .await
        .is_some());
    let auto_delete = QueueDeclareOptions {
        durable: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    assert!(refused(&connection, "q3", auto_delete, &quorum)
        .await
        .is_some());
    // Accepted: an explicit classic type (and its absence is the same queue), lazy mode, a
    // durable quorum queue.
    assert_eq!(
        refused(
            &connection,
            "c",
            plain,
            &[("x-queue-type", text("classic"))]
        )
        .await,
        None
    );
    assert_eq!(refused(&connection, "c", plain, &[]).await, None);
    assert_eq!(
        refused(
            &connection,
            "lazy",
            plain,
            &[("x-queue-mode", text("lazy"))]
        )
        .await,
        None
    );
    assert_eq!(
        refused(&connection, "quorum-ok", durable, &quorum).await,
        None
    );
    broker.shutdown().await;
}

/// A content header's properties with the x-death `time` values zeroed and the
/// `x-last-death-*` headers (which RabbitMQ 3.10 does not write) taken out.
fn comparable(hex: &str) -> warren_amqp::BasicProperties {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let mut header = ContentHeader::decode(Bytes::from(bytes)).unwrap();
    if let Some(headers) = header.properties.headers.as_mut() {
        headers
            .0
            .retain(|(key, _)| !key.starts_with("x-last-death-"));
        for (key, value) in headers.0.iter_mut() {
            if key == "x-death" {
                zero_times(value);
            }
        }
    }
    header.properties
}

fn zero_times(value: &mut FieldValue) {
    match value {
        FieldValue::FieldArray(values) => values.iter_mut().for_each(zero_times),
        FieldValue::FieldTable(WireTable(entries)) => {
            for (key, value) in entries.iter_mut() {
                if key == "time" {
                    assert!(
                        matches!(value, FieldValue::Timestamp(_)),
                        "time is {value:?}"
                    );
                    *value = FieldValue::Timestamp(0);
                } else {
                    zero_times(value);
                }
            }
        }
        _ => {}
    }
}

/// The `basic.get-ok` exchange and routing key lines a capture's listing records.
fn get_ok_route(listing: &str) -> Vec<String> {
    listing
        .split("## basic.get-ok")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("exchange ") || line.starts_with("routing-key "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_death_headers_match_rabbitmq_byte_for_byte() {
    let broker = TestBroker::start().await;
    let out = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let addr = broker.amqp_addr();
    let output = within(
        "the capture script",
        tokio::process::Command::new("python3")
            .arg(root.join("scripts/capture-rabbitmq-x-death.py"))
            .args([
                "--host",
                &addr.ip().to_string(),
                "--port",
                &addr.port().to_string(),
            ])
            .arg("--out")
            .arg(out.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "capture against warren failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let fixtures = root.join("tests/fixtures/rabbitmq-x-death");
    for name in ["expired", "rejected-twice", "maxlen", "headers-sorted"] {
        let read = |dir: &Path, ext: &str| {
            std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap()
        };
        let rabbit = comparable(read(&fixtures, "hex").trim());
        let warren = comparable(read(out.path(), "hex").trim());
        assert_eq!(
            warren, rabbit,
            "{name}: warren's properties differ from RabbitMQ's"
        );
        // Same bytes once normalised: types and order, not just equal values.
        let encode = |properties: &warren_amqp::BasicProperties| {
            let mut buf = bytes::BytesMut::new();
            properties.encode(&mut buf);
            buf
        };
        assert_eq!(encode(&warren), encode(&rabbit), "{name}: encodings differ");
        assert_eq!(
            get_ok_route(&read(out.path(), "txt")),
            get_ok_route(&read(&fixtures, "txt")),
            "{name}: basic.get-ok exchange / routing key"
        );
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sees_dead_letters_arrive_while_it_waits() {
    let broker = TestBroker::start().await;
    let (_connection, channel) = open(&broker).await;
    declare(&channel, "live-dead", &[]).await;
    declare(
        &channel,
        "live-src",
        &dead_lettering_to("live-dead", &[("x-message-ttl", AMQPValue::LongInt(30))]),
    )
    .await;
    channel
        .basic_qos(10, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            "live-dead",
            "watcher",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for n in 0..5 {
        publish(
            &channel,
            "live-src",
            &format!("m{n}"),
            BasicProperties::default(),
        )
        .await;
    }
    for n in 0..5 {
        let delivery = common::next_delivery(&mut consumer).await;
        assert_eq!(delivery.data, format!("m{n}").as_bytes());
    }
    broker.shutdown().await;
}
