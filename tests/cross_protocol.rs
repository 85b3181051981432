//! MQTT ⇄ AMQP through the shared routing core: an MQTT topic is a routing key on
//! `amq.topic` with `/` → `.` (and `+` → `*` in filters), payload bytes unchanged, MQTT 5 user
//! properties ⇔ AMQP headers.
//!
//! Quick checks with rumqttc + lapin here; the full set (properties mapping both ways, a 10,000
//! message QoS 1 → manual-ack run) in `tests/python/test_cross.py` with paho-mqtt + pika.
//!
//! Against external brokers set both `WARREN_TEST_EXTERNAL_MQTT` and `WARREN_TEST_EXTERNAL_AMQP`
//! (e.g. RabbitMQ with `rabbitmq_mqtt`: 127.0.0.1:1883 and 127.0.0.1:5672).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use mqtt_support::{p5, text, unique_id, within, Client3, Client5, External, QoS5, TestBroker};

async fn amqp_channel(broker: &TestBroker) -> (Connection, Channel) {
    let connection = within(
        "AMQP connection open",
        Connection::connect(&broker.amqp_uri(), ConnectionProperties::default()),
    )
    .await
    .expect("AMQP connection opens");
    let channel = within("channel open", connection.create_channel())
        .await
        .expect("channel opens");
    (connection, channel)
}

/// An exclusive queue bound to `amq.topic` with `binding_key`, and a no-ack consumer on it.
async fn bound_consumer(channel: &Channel, binding_key: &str) -> Consumer {
    let queue = format!("warren-test.cross.{}", unique_id("q"));
    within(
        "queue.declare",
        channel.queue_declare(
            &queue,
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.declare-ok");
    within(
        "queue.bind",
        channel.queue_bind(
            &queue,
            "amq.topic",
            binding_key,
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.bind-ok");
    within(
        "basic.consume",
        channel.basic_consume(
            &queue,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume-ok")
}

/// The next delivery whose body contains `tag` (on a shared broker, other runs' messages to the
/// same fixed topic are skipped).
async fn next_tagged(consumer: &mut Consumer, tag: &str) -> lapin::message::Delivery {
    loop {
        let delivery = within("an AMQP delivery", consumer.next())
            .await
            .expect("consumer stream ended")
            .expect("delivery without error");
        if text(&delivery.data).contains(tag) {
            return delivery;
        }
    }
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(value) => Some(text(value.as_bytes())),
        AMQPValue::ShortString(value) => Some(value.as_str().to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// (a) A device publishes to `sensors/kitchen/temp` at QoS 1 over MQTT 5 with user properties;
/// an AMQP consumer of a queue bound with `sensors.*.temp` receives the exact payload on
/// routing key `sensors.kitchen.temp`, persistent, with the user properties as headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_v5_publish_reaches_amqp_queue_with_user_properties_as_headers() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let (connection, channel) = amqp_channel(&broker).await;
    let mut consumer = bound_consumer(&channel, "sensors.*.temp").await;
    let tag = unique_id("cross-a5");
    let payload = [b"\x00\xff".as_slice(), format!("21.5 {tag}").as_bytes()].concat();

    let mut device = Client5::connect(broker.mqtt_addr(), &unique_id("cross-a5-dev")).await;
    let properties = p5::PublishProperties {
        user_properties: vec![
            ("site".to_string(), "home".to_string()),
            ("sensor".to_string(), "kitchen-1".to_string()),
        ],
        ..Default::default()
    };
    device
        .publish_with(
            "sensors/kitchen/temp",
            QoS5::AtLeastOnce,
            false,
            payload.clone(),
            Some(properties),
        )
        .await;

    let delivery = next_tagged(&mut consumer, &tag).await;
    assert_eq!(delivery.data, payload, "payload bytes pass unchanged");
    assert_eq!(delivery.exchange.as_str(), "amq.topic");
    assert_eq!(delivery.routing_key.as_str(), "sensors.kitchen.temp");
    assert_eq!(
        *delivery.properties.delivery_mode(),
        Some(2),
        "QoS 1 ⇒ delivery_mode 2"
    );
    let headers = delivery
        .properties
        .headers()
        .clone()
        .expect("user properties arrive as headers");
    assert_eq!(header_text(&headers, "site").as_deref(), Some("home"));
    assert_eq!(
        header_text(&headers, "sensor").as_deref(),
        Some("kitchen-1")
    );

    device.disconnect().await;
    within("AMQP connection close", connection.close(200, "bye"))
        .await
        .expect("connection.close-ok");
    broker.shutdown().await;
}

/// (a) over MQTT 3.1.1: QoS 1 ⇒ persistent (delivery_mode 2), QoS 0 ⇒ delivery_mode 1; exact
/// payload bytes; routing key with `/` → `.`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_v311_publish_reaches_amqp_queue_bound_with_topic_pattern() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let (connection, channel) = amqp_channel(&broker).await;
    let mut consumer = bound_consumer(&channel, "sensors.*.temp").await;
    let tag = unique_id("cross-a3");
    let mut device = Client3::connect(broker.mqtt_addr(), &unique_id("cross-a3-dev")).await;
    for (qos, delivery_mode, room) in [
        (rumqttc::QoS::AtLeastOnce, 2, "kitchen"),
        (rumqttc::QoS::AtMostOnce, 1, "garage"),
    ] {
        let payload = [b"\x00\xff".as_slice(), format!("{room} {tag}").as_bytes()].concat();
        device
            .publish(&format!("sensors/{room}/temp"), qos, false, payload.clone())
            .await;
        let delivery = next_tagged(&mut consumer, &tag).await;
        assert_eq!(delivery.data, payload, "payload bytes pass unchanged");
        assert_eq!(delivery.exchange.as_str(), "amq.topic");
        assert_eq!(
            delivery.routing_key.as_str(),
            format!("sensors.{room}.temp")
        );
        assert_eq!(
            *delivery.properties.delivery_mode(),
            Some(delivery_mode),
            "{qos:?} ⇒ delivery_mode {delivery_mode}"
        );
    }
    device.disconnect().await;
    within("AMQP connection close", connection.close(200, "bye"))
        .await
        .expect("connection.close-ok");
    broker.shutdown().await;
}

/// Publishes `payload` (persistent, with `headers`) to `amq.topic` and waits for the confirm.
async fn amqp_publish(
    broker: &TestBroker,
    routing_key: &str,
    payload: &[u8],
    headers: FieldTable,
) -> Connection {
    let (connection, channel) = amqp_channel(broker).await;
    within(
        "confirm.select",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm.select-ok");
    let confirm = within(
        "basic.publish",
        channel.basic_publish(
            "amq.topic",
            routing_key,
            BasicPublishOptions::default(),
            payload,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        ),
    )
    .await
    .expect("basic.publish is sent");
    let confirmation = within("publisher confirm", confirm)
        .await
        .expect("publisher confirm arrives");
    assert!(confirmation.is_ack(), "publish not acked: {confirmation:?}");
    connection
}

/// (b) An AMQP publish to `amq.topic` with routing key `cmd.device42` reaches MQTT 3.1.1
/// subscribers of `cmd/device42` and of `cmd/+`, on topic `cmd/device42`, with the exact
/// payload; a persistent AMQP message to a QoS 1 subscription arrives at QoS 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_reaches_mqtt_subscribers() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let mut exact = Client3::connect(broker.mqtt_addr(), &unique_id("cross-b-exact")).await;
    exact
        .subscribe("cmd/device42", rumqttc::QoS::AtLeastOnce)
        .await;
    let mut wildcard = Client3::connect(broker.mqtt_addr(), &unique_id("cross-b-wild")).await;
    wildcard.subscribe("cmd/+", rumqttc::QoS::AtLeastOnce).await;

    let tag = unique_id("cross-b");
    let payload = [b"\x01\x02reboot ".as_slice(), tag.as_bytes()].concat();
    let connection = amqp_publish(&broker, "cmd.device42", &payload, FieldTable::default()).await;

    for (name, client) in [("cmd/device42", &mut exact), ("cmd/+", &mut wildcard)] {
        let publish = loop {
            let publish = client.recv().await;
            if text(&publish.payload).contains(&tag) {
                break publish;
            }
        };
        assert_eq!(publish.topic, "cmd/device42", "topic seen by {name}");
        assert_eq!(
            publish.payload.as_ref(),
            payload.as_slice(),
            "payload seen by {name}"
        );
        assert_eq!(publish.qos, rumqttc::QoS::AtLeastOnce, "QoS seen by {name}");
    }
    exact.disconnect().await;
    wildcard.disconnect().await;
    within("AMQP connection close", connection.close(200, "bye"))
        .await
        .expect("connection.close-ok");
    broker.shutdown().await;
}

/// (b) for MQTT 5: the AMQP message's headers arrive as user properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_headers_reach_mqtt_v5_subscriber_as_user_properties() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let mut v5 = Client5::connect(broker.mqtt_addr(), &unique_id("cross-b5")).await;
    v5.subscribe("cmd/+", QoS5::AtLeastOnce).await;
    let tag = unique_id("cross-b5");
    let payload = [b"\x01\x02reboot ".as_slice(), tag.as_bytes()].concat();
    let mut headers = FieldTable::default();
    headers.insert("origin".into(), AMQPValue::LongString("ops-console".into()));
    let connection = amqp_publish(&broker, "cmd.device42", &payload, headers).await;
    let publish = loop {
        let publish = v5.recv().await;
        if text(&publish.payload).contains(&tag) {
            break publish;
        }
    };
    assert_eq!(text(&publish.topic), "cmd/device42");
    assert_eq!(publish.payload.as_ref(), payload.as_slice());
    assert_eq!(publish.qos, QoS5::AtLeastOnce);
    let user_properties = publish
        .properties
        .map(|p| p.user_properties)
        .unwrap_or_default();
    assert!(
        user_properties.contains(&("origin".to_string(), "ops-console".to_string())),
        "AMQP headers arrive as MQTT 5 user properties: {user_properties:?}"
    );
    v5.disconnect().await;
    within("AMQP connection close", connection.close(200, "bye"))
        .await
        .expect("connection.close-ok");
    broker.shutdown().await;
}

/// The paho-mqtt + pika script: (a) and (b) with the full property mapping, and (c) 10,000 MQTT
/// QoS 1 messages to an AMQP manual-ack consumer with no loss and no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_and_pika_cross_protocol_script() {
    mqtt_support::python::require_modules(&["paho.mqtt", "pika"]).await;
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    mqtt_support::python::run_script(
        "test_cross.py",
        &broker.amqp_addr().to_string(),
        &broker.mqtt_addr().to_string(),
    )
    .await;
    broker.shutdown().await;
}
