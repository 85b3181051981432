//! The Prometheus endpoint as an operator's scraper sees it: after 1,000 AMQP and 1,000
//! MQTT messages are published and consumed, the per-protocol `rabbitmq_global_messages_*`
//! counters and the per-queue gauges say exactly that; a deleted queue's series are gone
//! from the next scrape; `/metrics/per-object` and `/metrics/detailed` carry the objects'
//! labels, and `rabbitmq_identity_info` is there for dashboards to join on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use mqtt_support::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mqtt_support::{unique_id, within, Client3, External, TestBroker};

const MESSAGES: usize = 1_000;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// GETs `path` from the endpoint and parses the text format.
async fn scrape(address: SocketAddr, path: &str) -> Vec<Sample> {
    let response = mqtt_support::common::http::get(address, path)
        .await
        .expect("the metrics endpoint answers");
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{}",
        response.head
    );
    response
        .body
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("name and value");
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let mut parsed = BTreeMap::new();
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        parsed.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    Sample {
        name: name.to_string(),
        labels: parsed,
        value,
    }
}

/// The value of the one series of `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().map(|s| s.value)
}

fn expect(samples: &[Sample], name: &str, labels: &[(&str, &str)], expected: f64) {
    assert_eq!(
        value(samples, name, labels),
        Some(expected),
        "{name}{labels:?}"
    );
}

async fn broker() -> (TestBroker, SocketAddr) {
    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.prometheus_port = Some(0))
        .start()
        .await;
    let address = broker.prometheus_addr();
    (broker, address)
}

#[tokio::test]
async fn global_counters_and_queue_gauges_count_exactly_what_clients_did() {
    let (broker, metrics) = broker().await;
    let before = scrape(metrics, "/metrics").await;
    expect(
        &before,
        "rabbitmq_global_messages_received_total",
        &[("protocol", "amqp091")],
        0.0,
    );
    expect(&before, "rabbitmq_queues", &[], 0.0);
    expect(&before, "rabbitmq_queue_messages_ready", &[], 0.0);

    // AMQP: 1,000 confirmed publishes into a queue, consumed with manual acks.
    let connection = common::connect(&broker).await;
    let channel = common::confirm_channel(&connection).await;
    let queue = unique_id("metrics-amqp");
    channel
        .queue_declare(
            &queue,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = [7u8; 150];
    for _ in 0..MESSAGES {
        channel
            .basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // One message to nowhere, returned as mandatory.
    channel
        .basic_publish(
            "",
            "no-such-queue",
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let ready = scrape(metrics, "/metrics/per-object").await;
    let queue_labels = [("vhost", "/"), ("queue", queue.as_str())];
    expect(
        &ready,
        "rabbitmq_queue_messages_ready",
        &queue_labels,
        MESSAGES as f64,
    );
    expect(
        &ready,
        "rabbitmq_queue_messages_bytes",
        &queue_labels,
        (MESSAGES * body.len()) as f64,
    );
    expect(
        &ready,
        "rabbitmq_queue_messages_published_total",
        &queue_labels,
        MESSAGES as f64,
    );

    let mut consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..MESSAGES {
        let delivery = within("AMQP delivery", consumer.next())
            .await
            .expect("a delivery")
            .expect("not an error");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    // basic.get on the now empty queue: counted as an empty get.
    let empty = channel
        .basic_get(&queue, BasicGetOptions::default())
        .await
        .unwrap();
    assert!(empty.is_none());

    // MQTT: 1,000 QoS 1 publishes to a subscriber of the same connection's topic.
    let topic = unique_id("metrics/mqtt");
    let mut subscriber = Client3::connect(broker.mqtt_addr(), &unique_id("metrics-sub")).await;
    subscriber
        .subscribe(&topic, rumqttc::QoS::AtLeastOnce)
        .await;
    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("metrics-pub")).await;
    for _ in 0..MESSAGES {
        publisher
            .publish(&topic, rumqttc::QoS::AtLeastOnce, false, vec![1u8; 50])
            .await;
    }
    for _ in 0..MESSAGES {
        subscriber.recv().await;
    }

    // The counts settle as the clients' acks arrive.
    let mut last = Vec::new();
    for _ in 0..100 {
        last = scrape(metrics, "/metrics").await;
        let acked = value(
            &last,
            "rabbitmq_global_messages_acknowledged_total",
            &[("protocol", "mqtt311")],
        );
        let amqp_acked = value(
            &last,
            "rabbitmq_global_messages_acknowledged_total",
            &[("protocol", "amqp091")],
        );
        if acked == Some(MESSAGES as f64) && amqp_acked == Some(MESSAGES as f64) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let amqp = [("protocol", "amqp091")];
    let mqtt = [("protocol", "mqtt311")];
    let m = MESSAGES as f64;
    expect(
        &last,
        "rabbitmq_global_messages_received_total",
        &amqp,
        m + 1.0,
    );
    expect(
        &last,
        "rabbitmq_global_messages_received_confirm_total",
        &amqp,
        m + 1.0,
    );
    expect(
        &last,
        "rabbitmq_global_messages_confirmed_total",
        &amqp,
        m + 1.0,
    );
    expect(&last, "rabbitmq_global_messages_routed_total", &amqp, m);
    expect(
        &last,
        "rabbitmq_global_messages_unroutable_returned_total",
        &amqp,
        1.0,
    );
    expect(
        &last,
        "rabbitmq_global_messages_unroutable_dropped_total",
        &amqp,
        0.0,
    );
    expect(
        &last,
        "rabbitmq_global_messages_delivered_consume_manual_ack_total",
        &amqp,
        m,
    );
    expect(&last, "rabbitmq_global_messages_delivered_total", &amqp, m);
    expect(
        &last,
        "rabbitmq_global_messages_acknowledged_total",
        &amqp,
        m,
    );
    expect(
        &last,
        "rabbitmq_global_messages_get_empty_total",
        &amqp,
        1.0,
    );
    expect(&last, "rabbitmq_global_messages_received_total", &mqtt, m);
    expect(
        &last,
        "rabbitmq_global_messages_received_confirm_total",
        &mqtt,
        m,
    );
    expect(&last, "rabbitmq_global_messages_confirmed_total", &mqtt, m);
    expect(&last, "rabbitmq_global_messages_routed_total", &mqtt, m);
    expect(
        &last,
        "rabbitmq_global_messages_delivered_consume_manual_ack_total",
        &mqtt,
        m,
    );
    expect(
        &last,
        "rabbitmq_global_messages_acknowledged_total",
        &mqtt,
        m,
    );
    expect(
        &last,
        "warren_mqtt_messages_received_total",
        &[("protocol", "mqtt311"), ("qos", "1")],
        m,
    );
    expect(
        &last,
        "warren_mqtt_messages_delivered_total",
        &[("protocol", "mqtt311"), ("qos", "1")],
        m,
    );
    expect(&last, "rabbitmq_message_size_bytes_count", &amqp, m + 1.0);
    expect(
        &last,
        "rabbitmq_message_size_bytes_sum",
        &amqp,
        m * 150.0 + 4.0,
    );
    expect(
        &last,
        "rabbitmq_message_size_bytes_bucket",
        &[("protocol", "amqp091"), ("le", "100.0")],
        1.0,
    );
    expect(
        &last,
        "rabbitmq_message_size_bytes_bucket",
        &[("protocol", "amqp091"), ("le", "1000.0")],
        m + 1.0,
    );
    expect(
        &last,
        "rabbitmq_message_size_bytes_bucket",
        &[("protocol", "mqtt311"), ("le", "100.0")],
        m,
    );
    expect(&last, "rabbitmq_connections", &[], 3.0);
    expect(&last, "rabbitmq_channels", &[], 1.0);
    expect(&last, "rabbitmq_global_publishers", &amqp, 1.0);
    expect(&last, "rabbitmq_global_publishers", &mqtt, 1.0);
    expect(&last, "rabbitmq_global_consumers", &amqp, 1.0);
    expect(&last, "rabbitmq_global_consumers", &mqtt, 1.0);
    expect(
        &last,
        "warren_connections",
        &[("protocol", "mqtt311"), ("transport", "tcp")],
        2.0,
    );
    expect(
        &last,
        "warren_mqtt_sessions",
        &[("kind", "clean"), ("state", "online")],
        2.0,
    );
    expect(&last, "warren_mqtt_subscriptions", &[], 1.0);
    expect(&last, "rabbitmq_auth_attempts_succeeded_total", &[], 3.0);
    // Aggregated: the AMQP queue is empty, the MQTT subscriber's queue drained too.
    expect(&last, "rabbitmq_queue_messages_ready", &[], 0.0);
    expect(&last, "rabbitmq_queue_messages_unacked", &[], 0.0);
    expect(
        &last,
        "rabbitmq_queue_messages_published_total",
        &[],
        2.0 * m,
    );
    let identity = last
        .iter()
        .find(|s| s.name == "rabbitmq_identity_info")
        .expect("rabbitmq_identity_info");
    for label in [
        "rabbitmq_node",
        "rabbitmq_cluster",
        "rabbitmq_cluster_permanent_id",
    ] {
        assert!(!identity.labels[label].is_empty(), "{label}");
    }
    assert_eq!(identity.labels["rabbitmq_endpoint"], "metrics");

    // Per object: the queue, the channel and the connections have their own series.
    let per_object = scrape(metrics, "/metrics/per-object").await;
    expect(
        &per_object,
        "rabbitmq_queue_messages_published_total",
        &queue_labels,
        m,
    );
    expect(&per_object, "rabbitmq_queue_consumers", &queue_labels, 1.0);
    let channel_series: Vec<&Sample> = per_object
        .iter()
        .filter(|s| s.name == "rabbitmq_channel_messages_published_total")
        .collect();
    assert_eq!(channel_series.len(), 1, "{channel_series:?}");
    assert_eq!(channel_series[0].value, m + 1.0);
    let connection_series = per_object
        .iter()
        .filter(|s| s.name == "rabbitmq_connection_incoming_bytes_total")
        .count();
    assert_eq!(connection_series, 3);

    // Detailed: only the families asked for, named rabbitmq_detailed_.
    let detailed = scrape(
        metrics,
        "/metrics/detailed?family=queue_coarse_metrics&vhost=%2F",
    )
    .await;
    expect(
        &detailed,
        "rabbitmq_detailed_queue_messages_ready",
        &queue_labels,
        0.0,
    );
    assert!(detailed
        .iter()
        .all(|s| s.name.starts_with("rabbitmq_detailed_queue_")
            || s.name == "rabbitmq_identity_info"
            || s.name == "rabbitmq_build_info"
            || s.name == "process_start_time_seconds"));
    let other_vhost = scrape(
        metrics,
        "/metrics/detailed?family=queue_coarse_metrics&vhost=other",
    )
    .await;
    assert!(other_vhost
        .iter()
        .all(|s| !s.name.starts_with("rabbitmq_detailed_queue_")));

    // A deleted queue's series are gone from the next scrape.
    channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    let after = scrape(metrics, "/metrics/per-object").await;
    assert!(
        after.iter().all(|s| s.labels.get("queue") != Some(&queue)),
        "series of a deleted queue remain"
    );
    expect(&after, "rabbitmq_queues_deleted_total", &[], 1.0);

    // Closing clients keeps their counts; the gauges drop.
    connection.close(200, "bye").await.unwrap();
    publisher.disconnect().await;
    subscriber.disconnect().await;
    for _ in 0..100 {
        last = scrape(metrics, "/metrics").await;
        if value(&last, "rabbitmq_connections", &[]) == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    expect(&last, "rabbitmq_connections", &[], 0.0);
    expect(&last, "rabbitmq_connections_closed_total", &[], 3.0);
    expect(
        &last,
        "rabbitmq_global_messages_received_total",
        &amqp,
        m + 1.0,
    );
    expect(
        &last,
        "rabbitmq_global_messages_acknowledged_total",
        &mqtt,
        m,
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn refused_logins_count_as_failed_auth_attempts() {
    let (broker, metrics) = broker().await;
    let uri = format!("amqp://guest:wrong@{}/%2f", broker.amqp_addr());
    assert!(Connection::connect(&uri, ConnectionProperties::default())
        .await
        .is_err());
    let samples = scrape(metrics, "/metrics/per-object").await;
    expect(
        &samples,
        "rabbitmq_auth_attempts_failed_total",
        &[("protocol", "amqp091")],
        1.0,
    );
    expect(
        &samples,
        "rabbitmq_auth_attempts_succeeded_total",
        &[("protocol", "amqp091")],
        0.0,
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn persistent_messages_show_in_queue_and_store_families() {
    let (broker, metrics) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::confirm_channel(&connection).await;
    let queue = unique_id("metrics-durable");
    channel
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        channel
            .basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                b"kept",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let samples = scrape(metrics, "/metrics/per-object").await;
    let labels = [("vhost", "/"), ("queue", queue.as_str())];
    expect(&samples, "rabbitmq_queue_messages_persistent", &labels, 5.0);
    let fsyncs = value(&samples, "warren_store_fsync_seconds_count", &[]).unwrap();
    assert!(fsyncs >= 1.0, "confirms waited for at least one fsync");
    assert_eq!(
        value(&samples, "rabbitmq_io_sync_ops_total", &[]),
        Some(fsyncs)
    );
    assert_eq!(
        value(
            &samples,
            "warren_store_fsync_seconds_bucket",
            &[("le", "+Inf")]
        ),
        Some(fsyncs)
    );
    assert!(value(&samples, "warren_store_bytes", &[]).unwrap() > 0.0);
    assert!(value(&samples, "rabbitmq_io_write_bytes_total", &[]).unwrap() > 0.0);
    channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}
