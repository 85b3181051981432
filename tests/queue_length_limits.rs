//! `x-max-length` and `x-max-length-bytes` with `x-overflow` as RabbitMQ has them: `drop-head`
//! (the default) drops the oldest ready messages; `reject-publish` refuses new ones, which a
//! confirming AMQP publisher sees as basic.nack and an MQTT 5 QoS 1 publisher as PUBACK 0x97
//! (Quota exceeded), and accepts again once a consumer made room.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mqtt_support::{options5, unique_id, unique_topic, Client5, External, TestBroker};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

async fn declare(channel: &Channel, name: &str, limits: &[(&str, AMQPValue)]) {
    let mut arguments = FieldTable::default();
    for (key, value) in limits {
        arguments.insert((*key).into(), value.clone());
    }
    channel
        .queue_declare(name, QueueDeclareOptions::default(), arguments)
        .await
        .unwrap();
}

/// Publishes with confirms; true when acknowledged, false when nacked.
async fn publish(channel: &Channel, routing_key: &str, body: &str) -> bool {
    let confirmation = channel
        .basic_publish(
            "",
            routing_key,
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    confirmation.is_ack()
}

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

async fn open(broker: &TestBroker) -> (Connection, Channel) {
    let connection = Connection::connect(&broker.amqp_uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_keeps_the_newest_messages() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let (connection, channel) = open(&broker).await;
    declare(
        &channel,
        "newest-3",
        &[("x-max-length", AMQPValue::LongInt(3))],
    )
    .await;
    for body in ["1", "2", "3", "4", "5"] {
        assert!(
            publish(&channel, "newest-3", body).await,
            "drop-head accepts"
        );
    }
    assert_eq!(drain(&channel, "newest-3").await, ["3", "4", "5"]);
    declare(
        &channel,
        "newest-bytes",
        &[("x-max-length-bytes", AMQPValue::LongInt(10))],
    )
    .await;
    for body in ["aaaa", "bbbb", "cccc", "dddd"] {
        publish(&channel, "newest-bytes", body).await;
    }
    assert_eq!(drain(&channel, "newest-bytes").await, ["cccc", "dddd"]);
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_nacks_the_eleventh_confirmed_publish() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let (connection, channel) = open(&broker).await;
    declare(
        &channel,
        "ten",
        &[
            ("x-max-length", AMQPValue::LongInt(10)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ],
    )
    .await;
    for n in 1..=10 {
        assert!(
            publish(&channel, "ten", &n.to_string()).await,
            "message {n}"
        );
    }
    assert!(!publish(&channel, "ten", "11").await, "the 11th is nacked");
    // The nack did not disturb the confirms around it.
    assert!(!publish(&channel, "ten", "12").await);
    let first = channel
        .basic_get("ten", BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.delivery.data, b"1");
    assert!(
        publish(&channel, "ten", "13").await,
        "room again after a get"
    );
    let kept = drain(&channel, "ten").await;
    assert_eq!(kept.len(), 10);
    assert_eq!(kept.last().map(String::as_str), Some("13"));
    assert!(!kept.contains(&"11".to_string()));
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_5_publisher_gets_quota_exceeded() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let (connection, channel) = open(&broker).await;
    let topic = unique_topic("limited");
    declare(
        &channel,
        "two",
        &[
            ("x-max-length", AMQPValue::LongInt(2)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ],
    )
    .await;
    channel
        .queue_bind(
            "two",
            "amq.topic",
            &mqtt_support::amqp_key(&topic),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut device =
        Client5::connect_with(options5(broker.mqtt_addr(), &unique_id("limited"))).await;
    assert_eq!(
        device.publish_qos1_raw(&topic, "1").await,
        PubAckReason::Success
    );
    assert_eq!(
        device.publish_qos1_raw(&topic, "2").await,
        PubAckReason::Success
    );
    assert_eq!(
        device.publish_qos1_raw(&topic, "3").await,
        PubAckReason::QuotaExceeded
    );
    device.kill().await;
    assert_eq!(drain(&channel, "two").await, ["1", "2"]);
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}
