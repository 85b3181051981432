//! How deliveries are shared among consumers beyond plain round-robin, as RabbitMQ 3.x does
//! it: consumer priorities (`x-priority` on basic.consume), basic.qos with `global=true` (one
//! limit for all the channel's consumers, on every queue they read) and channel.flow (a
//! paused channel gets nothing until it resumes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{within, TestBroker};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ChannelFlowOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

async fn open(broker: &TestBroker) -> Connection {
    Connection::connect(&broker.amqp_uri(), ConnectionProperties::default())
        .await
        .unwrap()
}

async fn declare(channel: &Channel, name: &str) {
    channel
        .queue_declare(name, QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
}

async fn publish(channel: &Channel, queue: &str, count: usize) {
    for n in 0..count {
        channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                format!("{queue}-{n}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn consume(channel: &Channel, queue: &str, tag: &str, priority: Option<i32>) -> Consumer {
    let mut arguments = FieldTable::default();
    if let Some(priority) = priority {
        arguments.insert("x-priority".into(), AMQPValue::LongInt(priority));
    }
    channel
        .basic_consume(queue, tag, BasicConsumeOptions::default(), arguments)
        .await
        .unwrap()
}

async fn ready(channel: &Channel, queue: &str) -> u32 {
    common::queue_counts(channel, queue).await.0
}

async fn next(consumer: &mut Consumer) -> lapin::message::Delivery {
    within("a delivery", consumer.next())
        .await
        .unwrap()
        .unwrap()
}

/// Waits until `queue` holds `count` ready messages, then checks that it stays there a
/// moment (a consumer without credit must not take more).
async fn settles_at(channel: &Channel, queue: &str, count: u32) {
    within(&format!("{queue} to hold {count} ready"), async {
        while ready(channel, queue).await != count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ready(channel, queue).await, count, "{queue} changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_consumer_gets_everything_while_it_has_credit() {
    let broker = TestBroker::start().await;
    let connection = open(&broker).await;
    let setup = connection.create_channel().await.unwrap();
    declare(&setup, "prio-consumers").await;
    let high_channel = connection.create_channel().await.unwrap();
    high_channel
        .basic_qos(3, BasicQosOptions::default())
        .await
        .unwrap();
    let low_channel = connection.create_channel().await.unwrap();
    // The low-priority consumer comes first: arrival order must not matter.
    let mut low = consume(&low_channel, "prio-consumers", "low", Some(-5)).await;
    let mut high = consume(&high_channel, "prio-consumers", "high", Some(10)).await;
    publish(&setup, "prio-consumers", 3).await;
    // All three go to the high-priority consumer (prefetch 3), none to the low one...
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut high).await);
    }
    settles_at(&setup, "prio-consumers", 0).await;
    // ...and once it is full, the low one gets the rest.
    publish(&setup, "prio-consumers", 2).await;
    for _ in 0..2 {
        let delivery = next(&mut low).await;
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    for delivery in held {
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_qos_limits_the_channel_across_its_consumers_and_queues() {
    let broker = TestBroker::start().await;
    let connection = open(&broker).await;
    let setup = connection.create_channel().await.unwrap();
    declare(&setup, "global-a").await;
    declare(&setup, "global-b").await;
    publish(&setup, "global-a", 5).await;
    publish(&setup, "global-b", 5).await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(4, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut a = consume(&channel, "global-a", "a", None).await;
    let mut b = consume(&channel, "global-b", "b", None).await;
    // Four deliveries in all, whichever queues they come from.
    within("four unacknowledged deliveries on the channel", async {
        loop {
            let total = ready(&setup, "global-a").await + ready(&setup, "global-b").await;
            if total == 6 {
                break;
            }
            assert!(total > 6, "more than 4 deliveries: {total} left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = ready(&setup, "global-a").await + ready(&setup, "global-b").await;
    assert_eq!(left, 6, "the global limit of 4 was overrun");
    // An ack on one queue frees credit the other queue's consumer may use: drain everything,
    // acking one at a time.
    let mut received = 0;
    while received < 10 {
        let delivery = tokio::select! {
            delivery = next(&mut a) => delivery,
            delivery = next(&mut b) => delivery,
        };
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        received += 1;
    }
    assert_eq!(
        ready(&setup, "global-a").await + ready(&setup, "global-b").await,
        0
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flow_pauses_and_resumes_deliveries() {
    let broker = TestBroker::start().await;
    let connection = open(&broker).await;
    let setup = connection.create_channel().await.unwrap();
    declare(&setup, "flowed").await;
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = consume(&channel, "flowed", "paused", None).await;
    publish(&setup, "flowed", 1).await;
    next(&mut consumer)
        .await
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    channel
        .channel_flow(ChannelFlowOptions { active: false })
        .await
        .unwrap();
    publish(&setup, "flowed", 3).await;
    settles_at(&setup, "flowed", 3).await;
    channel
        .channel_flow(ChannelFlowOptions { active: true })
        .await
        .unwrap();
    for _ in 0..3 {
        next(&mut consumer)
            .await
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    broker.shutdown().await;
}
