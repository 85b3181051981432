//! Priority queues (`x-max-priority`) as RabbitMQ has them: higher priorities are delivered
//! first, FIFO within a priority, priorities above the maximum count as the maximum, a
//! requeued message keeps its place in its priority, and the order survives a restart.
//! Queues without `x-max-priority` ignore the property.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{channel, connect, unique, External, TestBroker};
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

async fn declare(channel: &Channel, name: &str, max_priority: Option<u8>, durable: bool) {
    let mut arguments = FieldTable::default();
    if let Some(max) = max_priority {
        arguments.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(max));
    }
    channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                durable,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
}

/// Publishes `(body, priority)` pairs with confirms.
async fn publish(
    channel: &Channel,
    queue: &str,
    messages: &[(&str, Option<u8>)],
    persistent: bool,
) {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (body, priority) in messages {
        let mut properties = BasicProperties::default();
        if let Some(priority) = priority {
            properties = properties.with_priority(*priority);
        }
        if persistent {
            properties = properties.with_delivery_mode(2);
        }
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
}

/// Takes every ready message with basic.get (acknowledged), in delivery order.
async fn drain(channel: &Channel, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(message) = channel
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        bodies.push(String::from_utf8(message.delivery.data.clone()).unwrap());
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priorities_overtake_queued_lower_ones() {
    let broker = TestBroker::options().external(External::Amqp).start().await;
    let connection = connect(&broker).await;
    let ch = channel(&connection).await;
    let queue = unique("priority");
    declare(&ch, &queue, Some(10), false).await;
    publish(
        &ch,
        &queue,
        &[
            ("low-1", Some(1)),
            ("none-1", None),
            ("low-2", Some(1)),
            ("high-1", Some(9)),
            ("capped", Some(200)),
            ("high-2", Some(9)),
            ("none-2", None),
        ],
        false,
    )
    .await;
    assert_eq!(
        drain(&ch, &queue).await,
        ["capped", "high-1", "high-2", "low-1", "low-2", "none-1", "none-2"],
        "priority 200 counts as the maximum (10); FIFO within a priority"
    );
    // Without x-max-priority the property is ignored.
    let plain = unique("plain");
    declare(&ch, &plain, None, false).await;
    publish(&ch, &plain, &[("a", Some(1)), ("b", Some(9))], false).await;
    assert_eq!(drain(&ch, &plain).await, ["a", "b"]);
    for name in [&queue, &plain] {
        ch.queue_delete(name, QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    common::close(connection).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_message_keeps_its_place_in_its_priority() {
    let broker = TestBroker::options().external(External::Amqp).start().await;
    let connection = connect(&broker).await;
    let ch = channel(&connection).await;
    let queue = unique("priority-requeue");
    declare(&ch, &queue, Some(5), false).await;
    publish(
        &ch,
        &queue,
        &[("low", Some(1)), ("high-1", Some(5)), ("high-2", Some(5))],
        false,
    )
    .await;
    let first = ch
        .basic_get(&queue, BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(first.delivery.data, b"high-1");
    ch.basic_nack(
        first.delivery.delivery_tag,
        BasicNackOptions {
            requeue: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(drain(&ch, &queue).await, ["high-1", "high-2", "low"]);
    ch.queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    common::close(connection).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(&broker).await;
    let ch = channel(&connection).await;
    declare(&ch, "tasks", Some(100), true).await;
    publish(
        &ch,
        "tasks",
        &[
            ("backlog-1", Some(0)),
            ("backlog-2", Some(0)),
            ("urgent", Some(90)),
            ("medium", Some(50)),
        ],
        true,
    )
    .await;
    common::close(connection).await;
    broker.shutdown().await;

    let broker = TestBroker::options().data_dir(dir.path()).start().await;
    let connection = connect(&broker).await;
    let ch = channel(&connection).await;
    assert_eq!(
        drain(&ch, "tasks").await,
        ["urgent", "medium", "backlog-1", "backlog-2"]
    );
    common::close(connection).await;
    broker.shutdown().await;
}
