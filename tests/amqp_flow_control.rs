//! Flow control: a publisher faster than its consumers is blocked (connection.blocked) once
//! queued data passes the memory high watermark, and unblocked when consumers drain it, so
//! broker memory stays bounded; a publisher faster than the consumers draining its queue is
//! paused. A consumer that is stuck altogether does not pause its publishers
//! (`tests/amqp_stuck_consumer.rs`), but memory still brakes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{unique, within};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

const WATERMARK: u64 = 1024 * 1024;
const BODY: usize = 4096;

/// An in-process broker with a memory high watermark of `watermark` bytes, and its data
/// directory.
async fn start_with_watermark(watermark: u64) -> (warren::Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary data directory");
    let config = warren::Config {
        bind: "127.0.0.1".parse().expect("loopback"),
        amqp_port: 0,
        mqtt_port: 0,
        data_dir: dir.path().to_path_buf(),
        memory_high_watermark: watermark,
        ..warren::Config::default()
    };
    let broker = within("broker start", warren::Broker::start(config))
        .await
        .expect("broker starts");
    (broker, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_publisher_is_blocked_at_the_watermark_and_released_when_drained() {
    let (broker, _dir) = start_with_watermark(WATERMARK).await;
    let uri = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr());

    let publisher = within(
        "publisher connect",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("publisher connects");
    let channel = within("channel", publisher.create_channel())
        .await
        .expect("channel");
    let queue = unique("flow");
    within(
        "queue.declare",
        channel.queue_declare(
            &queue,
            QueueDeclareOptions {
                auto_delete: false,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue declared");

    // Publish well past the watermark (8x) from a task: once the broker stops reading, the
    // publishes stall, which is the point.
    let body = vec![7u8; BODY];
    let publish_channel = channel.clone();
    let publish_queue = queue.clone();
    let total = 8 * WATERMARK as usize / BODY;
    let publishing = tokio::spawn(async move {
        for _ in 0..total {
            if publish_channel
                .basic_publish(
                    "",
                    &publish_queue,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .is_err()
            {
                break;
            }
        }
    });

    let mut blocked = false;
    for _ in 0..200 {
        if publisher.status().blocked() {
            blocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(blocked, "the publisher was never sent connection.blocked");

    // Memory is bounded: what the broker accepted stays near the watermark (one read burst
    // of slack), far below what the client tried to send.
    let observer = within(
        "observer connect",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("observer connects");
    let observe = within("channel", observer.create_channel())
        .await
        .expect("channel");
    let depth = common::queue_counts(&observe, &queue).await.0 as usize;
    assert!(
        depth * BODY <= 2 * WATERMARK as usize,
        "{depth} messages of {BODY} bytes queued with a {WATERMARK}-byte watermark"
    );
    assert!(depth < total, "the publisher was not held back");

    // A consumer drains the queue; the publisher is unblocked and finishes.
    let mut consumer = within(
        "basic.consume",
        observe.basic_consume(
            &queue,
            "drain",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("consumer");
    let mut received = 0;
    while received < total {
        let next = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("deliveries keep flowing after the publisher is released");
        match next {
            Some(Ok(_)) => received += 1,
            other => panic!("consumer ended early: {other:?}"),
        }
    }
    within("publisher task", publishing)
        .await
        .expect("publisher task");
    assert!(!publisher.status().blocked(), "publisher still blocked");
    assert_eq!(received, total, "every message published arrives");
    broker.shutdown().await;
}

/// Per-queue flow: a publisher faster than the consumers of its queue is paused while the
/// queue's backlog is over the flow threshold (8 MiB of bodies), so the queue stays short
/// instead of growing until it pages, and every message still arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_is_paused_while_its_queue_is_far_ahead_of_the_consumers() {
    let broker = common::TestBroker::start().await;
    let publisher = common::connect(&broker).await;
    let publish_channel = common::channel(&publisher).await;
    let consumer_connection = common::connect(&broker).await;
    let consume_channel = common::channel(&consumer_connection).await;
    let queue = unique("queue-flow");
    within(
        "queue.declare",
        publish_channel.queue_declare(
            &queue,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue declared");
    within(
        "basic.qos",
        consume_channel.basic_qos(10, lapin::options::BasicQosOptions::default()),
    )
    .await
    .expect("qos");
    let mut consumer = common::consume(&consume_channel, &queue).await;

    // 40 MiB in 4 KiB messages: five times the flow threshold.
    const TOTAL: usize = 10_000;
    let publishing_queue = queue.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..TOTAL {
            let mut body = vec![0u8; BODY];
            body[..8].copy_from_slice(&(i as u64).to_be_bytes());
            publish_channel
                .basic_publish(
                    "",
                    &publishing_queue,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
        }
    });

    // A slow consumer (at most ~10,000 messages a second) that checks the order.
    let consuming = tokio::spawn(async move {
        for expected in 0..TOTAL as u64 {
            let delivery = common::next_delivery(&mut consumer).await;
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&delivery.data[..8]);
            assert_eq!(
                u64::from_be_bytes(seq),
                expected,
                "messages arrive in order"
            );
            delivery
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .expect("ack");
            if expected % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });

    let observer = common::connect(&broker).await;
    let observe = common::channel(&observer).await;
    let mut deepest = 0;
    while !consuming.is_finished() {
        let depth = common::queue_counts(&observe, &queue).await.0 as usize;
        deepest = deepest.max(depth);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    within("consumer task", consuming)
        .await
        .expect("every message arrives in order");
    within("publisher task", publishing)
        .await
        .expect("publisher task");
    // 8 MiB of 4 KiB bodies is 2,048 messages; one read burst of the publisher may land on
    // top of that before it pauses.
    assert!(
        deepest <= 3_000,
        "the queue reached {deepest} messages of {BODY} bytes: its publisher was not paused"
    );
    assert!(deepest > 0, "the observer never saw a backlog");
    broker.shutdown().await;
}

/// The memory brake holds even when the queue's only consumer is stuck (which no longer
/// pauses publishers): with a watermark below the queue's in-memory budget, a publisher
/// flooding that queue is sent connection.blocked before the broker holds much more than the
/// watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_of_a_stuck_consumer_is_still_blocked_at_the_watermark() {
    const STUCK_WATERMARK: u64 = 8 * 1024 * 1024;
    const LARGE_BODY: usize = 64 * 1024;
    let (broker, _dir) = start_with_watermark(STUCK_WATERMARK).await;
    let uri = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr());
    let publisher = within(
        "publisher connect",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("publisher connects");
    let channel = within("channel", publisher.create_channel())
        .await
        .expect("channel");
    let queue = unique("stuck-watermark");
    within(
        "queue.declare",
        channel.queue_declare(
            &queue,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue declared");

    // An auto-ack consumer that never reads after subscribing.
    let mut stuck = common::raw::RawConnection::open(broker.amqp_addr(), 128 * 1024).await;
    stuck.open_channel(1).await;
    stuck
        .send(&common::raw::basic_consume(1, &queue, true))
        .await;
    let consume_ok = stuck.read_frame().await.expect("basic.consume-ok");
    assert_eq!(consume_ok.method_id(), Some((60, 21)), "basic.consume-ok");

    // Four times the watermark, from a task: it stalls once the broker stops reading.
    let total = 4 * STUCK_WATERMARK as usize / LARGE_BODY;
    let publish_channel = channel.clone();
    let publish_queue = queue.clone();
    let publishing = tokio::spawn(async move {
        let body = vec![3u8; LARGE_BODY];
        for _ in 0..total {
            if publish_channel
                .basic_publish(
                    "",
                    &publish_queue,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .is_err()
            {
                break;
            }
        }
    });

    let mut blocked = false;
    for _ in 0..200 {
        if publisher.status().blocked() {
            blocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(blocked, "the publisher was never sent connection.blocked");
    let observer = within(
        "observer connect",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("observer connects");
    let observe = within("channel", observer.create_channel())
        .await
        .expect("channel");
    let depth = common::queue_counts(&observe, &queue).await.0 as usize;
    assert!(
        depth < total,
        "all {total} messages were queued: the publisher was not held back"
    );
    assert!(
        (depth * LARGE_BODY) as u64 <= 2 * STUCK_WATERMARK,
        "{depth} messages of {LARGE_BODY} bytes queued with a {STUCK_WATERMARK}-byte watermark"
    );

    publishing.abort();
    stuck.abort();
    broker.shutdown().await;
}
