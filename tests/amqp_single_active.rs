//! `x-single-active-consumer` as RabbitMQ has it: of several consumers only the first gets
//! messages; when it cancels, or its connection goes, the next one takes over (with what the
//! gone one left unacknowledged). The management API shows which consumer is active.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{channel, connect, unique, within, External, TestBroker};
use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};

async fn publish(channel: &Channel, queue: &str, bodies: &[&str]) {
    for body in bodies {
        channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn consume(channel: &Channel, queue: &str, tag: &str, no_ack: bool) -> Consumer {
    channel
        .basic_consume(
            queue,
            tag,
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
}

async fn next_body(consumer: &mut Consumer) -> String {
    let delivery = within("a delivery", consumer.next())
        .await
        .expect("consumer open")
        .expect("a delivery");
    String::from_utf8(delivery.data).unwrap()
}

/// Nothing arrives at `consumer` within a short while.
async fn nothing_for(consumer: &mut Consumer) {
    let got = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(got.is_err(), "a waiting consumer got {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_consumer_takes_over_on_cancel_and_on_connection_loss() {
    let broker = TestBroker::options().external(External::Amqp).start().await;
    let publisher = connect(&broker).await;
    let pub_channel = channel(&publisher).await;
    pub_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = unique("sac");
    let mut arguments = FieldTable::default();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    pub_channel
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();

    let first_connection = connect(&broker).await;
    let first_channel = channel(&first_connection).await;
    let mut first = consume(&first_channel, &queue, "first", true).await;
    let second_connection = connect(&broker).await;
    let second_channel = channel(&second_connection).await;
    let mut second = consume(&second_channel, &queue, "second", false).await;
    let third_connection = connect(&broker).await;
    let third_channel = channel(&third_connection).await;
    let mut third = consume(&third_channel, &queue, "third", true).await;

    publish(&pub_channel, &queue, &["a", "b", "c"]).await;
    for expected in ["a", "b", "c"] {
        assert_eq!(next_body(&mut first).await, expected);
    }
    nothing_for(&mut second).await;

    // Cancel: the second consumer (manual ack) takes over.
    first_channel
        .basic_cancel("first", BasicCancelOptions::default())
        .await
        .unwrap();
    publish(&pub_channel, &queue, &["d", "e"]).await;
    assert_eq!(next_body(&mut second).await, "d");
    assert_eq!(next_body(&mut second).await, "e");
    nothing_for(&mut third).await;

    // Connection loss: the third takes over, with the two the second never acknowledged.
    drop(second);
    second_connection.close(200, "gone").await.unwrap();
    let mut redelivered = vec![next_body(&mut third).await, next_body(&mut third).await];
    redelivered.sort();
    assert_eq!(redelivered, ["d", "e"]);
    publish(&pub_channel, &queue, &["f"]).await;
    assert_eq!(next_body(&mut third).await, "f");

    for connection in [publisher, first_connection, third_connection] {
        common::close(connection).await;
    }
    broker.shutdown().await;
}

/// `/api/consumers` tells the active consumer from the waiting ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_which_consumer_is_active() {
    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.management_port = Some(0))
        .start()
        .await;
    let api = broker.in_process().management_addr().unwrap();
    let connection = connect(&broker).await;
    let ch = channel(&connection).await;
    let mut arguments = FieldTable::default();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare("sac", QueueDeclareOptions::default(), arguments)
        .await
        .unwrap();
    let _active = consume(&ch, "sac", "one", true).await;
    let _waiting = consume(&ch, "sac", "two", true).await;
    let response = common::http::get_as(api, "/api/consumers", "guest", "guest")
        .await
        .unwrap();
    let consumers: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    let state = |tag: &str| {
        consumers
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["consumer_tag"] == tag)
            .map(|c| (c["active"].clone(), c["activity_status"].clone()))
            .unwrap()
    };
    assert_eq!(state("one"), (true.into(), "up".into()));
    assert_eq!(state("two"), (false.into(), "waiting".into()));
    common::close(connection).await;
    broker.shutdown().await;
}
