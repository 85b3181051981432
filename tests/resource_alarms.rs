//! Resource alarms as RabbitMQ raises them: under the memory high watermark or below the disk
//! free limit, publishing connections get connection.blocked and are not read until the alarm
//! clears, consumers keep draining, nothing confirmed is lost, and connection.unblocked lets
//! publishing resume.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{unique, within};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::task::JoinHandle;

async fn start(config: warren::Config) -> (warren::Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = warren::Config {
        bind: "127.0.0.1".parse().unwrap(),
        amqp_port: 0,
        mqtt_port: 0,
        data_dir: dir.path().to_path_buf(),
        ..config
    };
    let broker = within("broker start", warren::Broker::start(config))
        .await
        .unwrap();
    (broker, dir)
}

async fn connect(broker: &warren::Broker) -> Connection {
    let uri = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr());
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap()
}

/// Publishes `total` confirmed messages of `size` bytes from a task; returns how many were
/// acknowledged (every one must be).
fn publish_confirmed(
    channel: Channel,
    queue: String,
    total: usize,
    size: usize,
) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let body = vec![7u8; size];
        let mut confirmations = Vec::new();
        for _ in 0..total {
            let confirmation = channel
                .basic_publish(
                    "",
                    &queue,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap();
            confirmations.push(confirmation);
        }
        let mut acked = 0;
        for confirmation in confirmations {
            if confirmation.await.unwrap().is_ack() {
                acked += 1;
            }
        }
        acked
    })
}

/// A publisher connection with confirms on a new durable queue, publishing `total` messages of
/// `size` bytes from a task.
async fn start_publishing(
    broker: &warren::Broker,
    prefix: &str,
    total: usize,
    size: usize,
) -> (Connection, String, JoinHandle<usize>) {
    let publisher = connect(broker).await;
    let channel = publisher.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = unique(prefix);
    declare(&channel, &queue).await;
    let publishing = publish_confirmed(channel, queue.clone(), total, size);
    (publisher, queue, publishing)
}

async fn wait_blocked(connection: &Connection, blocked: bool) {
    within(&format!("the publisher to be blocked={blocked}"), async {
        while connection.status().blocked() != blocked {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn declare(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

async fn ready(channel: &Channel, queue: &str) -> u32 {
    common::queue_counts(channel, queue).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_alarm_blocks_publishers_until_consumers_drain_and_loses_nothing() {
    const WATERMARK: u64 = 256 * 1024;
    const BODY: usize = 4096;
    const TOTAL: usize = 1000; // 4 MB: sixteen times the watermark
    let (broker, _dir) = start(warren::Config {
        memory_high_watermark: WATERMARK,
        ..warren::Config::default()
    })
    .await;
    let (publisher, queue, publishing) =
        start_publishing(&broker, "memory-alarm", TOTAL, BODY).await;
    wait_blocked(&publisher, true).await;
    // Held back near the watermark, far from everything the client wants to send.
    let observer = connect(&broker).await;
    let observe = observer.create_channel().await.unwrap();
    let held = ready(&observe, &queue).await as usize;
    assert!(held < TOTAL, "the publisher was not held back");
    assert!(
        held * BODY <= 4 * WATERMARK as usize,
        "{held} messages queued past the watermark"
    );
    // A consumer keeps draining while publishers are blocked; the publisher is released and
    // every message arrives.
    let mut consumer = observe
        .basic_consume(
            &queue,
            "drain",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut received = 0;
    while received < TOTAL {
        within("deliveries", consumer.next())
            .await
            .unwrap()
            .unwrap();
        received += 1;
    }
    let acked = within("the publisher to finish", publishing).await.unwrap();
    assert_eq!(acked, TOTAL, "every publish confirmed");
    wait_blocked(&publisher, false).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_alarm_blocks_publishers_until_space_is_back() {
    // A limit above any free space: the alarm is on from the start.
    let (broker, _dir) = start(warren::Config {
        disk_free_limit: u64::MAX / 2,
        ..warren::Config::default()
    })
    .await;
    let (publisher, queue, publishing) = start_publishing(&broker, "disk-alarm", 50, 100).await;
    // The first publish marks the connection a publisher; it is then blocked and not read.
    wait_blocked(&publisher, true).await;
    let observer = connect(&broker).await;
    let observe = observer.create_channel().await.unwrap();
    let before = ready(&observe, &queue).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = ready(&observe, &queue).await;
    assert_eq!(before, after, "a blocked publisher was still read");
    assert!(after < 50, "nothing was held back");
    // Consumers are not blocked: one message can be taken while the alarm is on.
    if after > 0 {
        assert!(common::get_body(&observe, &queue).await.is_some());
    }
    // Space comes back (the limit drops below the free space): unblocked, and the rest
    // arrives, every publish confirmed.
    broker.core().disk().set_limit(0);
    wait_blocked(&publisher, false).await;
    let acked = within("the publisher to finish", publishing).await.unwrap();
    assert_eq!(acked, 50);
    let expected = 50 - u32::from(after > 0);
    within("every message in the queue", async {
        while ready(&observe, &queue).await != expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    broker.shutdown().await;
}
