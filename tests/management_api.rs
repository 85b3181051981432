//! The management HTTP API as monitoring tools read it: HTTP basic authentication (401 with
//! RabbitMQ's error shape without it), `/api/whoami`, `/api/overview` totals and listeners,
//! `/api/queues` with RabbitMQ's field names for a queue holding ready and unacknowledged
//! messages, 404 for a missing queue or vhost, and `/api/health/checks/alarms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::http::{get, get_as};
use common::TestBroker;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::Value;

async fn broker() -> (TestBroker, SocketAddr) {
    common::broker_with_management().await
}

async fn json_as_guest(api: SocketAddr, path: &str) -> (u16, Value) {
    let response = get_as(api, path, "guest", "guest").await.unwrap();
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        response.head
    );
    let value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", response.body));
    (response.status, value)
}

#[tokio::test]
async fn requests_need_a_management_user() {
    let (broker, api) = broker().await;
    let anonymous = get(api, "/api/overview").await.unwrap();
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .head
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{}",
        anonymous.head
    );
    let body: Value = serde_json::from_str(&anonymous.body).unwrap();
    assert_eq!(body["error"], "not_authorised");
    let wrong = get_as(api, "/api/overview", "guest", "wrong")
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    let (status, whoami) = json_as_guest(api, "/api/whoami").await;
    assert_eq!(status, 200);
    assert_eq!(whoami["name"], "guest");
    assert_eq!(whoami["tags"], serde_json::json!(["administrator"]));
    let (status, missing) = json_as_guest(api, "/api/no-such-thing").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "Object Not Found");
    broker.shutdown().await;
}

#[tokio::test]
async fn queues_and_overview_show_ready_and_unacknowledged_messages() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::channel(&connection).await;
    let queue = common::exclusive_queue(&channel, "api").await;
    for _ in 0..5 {
        channel
            .basic_publish(
                "",
                &queue,
                BasicPublishOptions::default(),
                b"0123456789",
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap();
    }
    // Two deliveries held unacknowledged: prefetch 2, never acked.
    channel
        .basic_qos(2, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            &queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        common::within("delivery", consumer.next())
            .await
            .unwrap()
            .unwrap();
    }
    let path = format!("/api/queues/%2F/{queue}");
    let mut shown = Value::Null;
    for _ in 0..100 {
        let (status, value) = json_as_guest(api, &path).await;
        assert_eq!(status, 200, "{value}");
        if value["messages_unacknowledged"] == 2 {
            shown = value;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(shown["name"], queue.as_str());
    assert_eq!(shown["vhost"], "/");
    assert_eq!(shown["messages"], 5);
    assert_eq!(shown["messages_ready"], 3);
    assert_eq!(shown["messages_unacknowledged"], 2);
    assert_eq!(shown["consumers"], 1);
    assert_eq!(shown["message_bytes"], 50);
    assert_eq!(shown["durable"], false);
    assert_eq!(shown["exclusive"], true);
    assert_eq!(shown["type"], "classic");

    let (_, all) = json_as_guest(api, "/api/queues").await;
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == queue.as_str()));
    let (_, in_vhost) = json_as_guest(api, "/api/queues/%2F").await;
    assert!(in_vhost
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == queue.as_str()));
    let (status, _) = json_as_guest(api, "/api/queues/%2F/no-such-queue").await;
    assert_eq!(status, 404);
    let (status, _) = json_as_guest(api, "/api/queues/no-such-vhost").await;
    assert_eq!(status, 404);

    let (status, overview) = json_as_guest(api, "/api/overview").await;
    assert_eq!(status, 200);
    assert_eq!(overview["queue_totals"]["messages_ready"], 3);
    assert_eq!(overview["queue_totals"]["messages_unacknowledged"], 2);
    assert_eq!(overview["object_totals"]["queues"], 1);
    assert_eq!(overview["object_totals"]["connections"], 1);
    assert_eq!(overview["object_totals"]["channels"], 1);
    assert_eq!(overview["object_totals"]["consumers"], 1);
    let listeners = overview["listeners"].as_array().unwrap();
    let amqp_port = broker.amqp_addr().port();
    assert!(
        listeners
            .iter()
            .any(|l| l["protocol"] == "amqp" && l["port"] == amqp_port),
        "{listeners:?}"
    );
    assert!(listeners
        .iter()
        .any(|l| l["protocol"] == "http" && l["port"] == api.port()));

    let (_, channels) = json_as_guest(api, "/api/channels").await;
    let channel_shown = &channels[0];
    assert_eq!(channel_shown["number"], 1);
    assert_eq!(channel_shown["user"], "guest");
    assert_eq!(channel_shown["consumer_count"], 1);
    assert_eq!(channel_shown["prefetch_count"], 2);
    assert_eq!(channel_shown["messages_unacknowledged"], 2);
    assert_eq!(channel_shown["message_stats"]["publish"], 5);
    assert_eq!(channel_shown["message_stats"]["deliver"], 2);

    let (status, alarms) = json_as_guest(api, "/api/health/checks/alarms").await;
    assert_eq!(status, 200);
    assert_eq!(alarms["status"], "ok");
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn lists_page_sort_and_filter_as_rabbitmq_does() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::channel(&connection).await;
    let prefix = common::unique("paged");
    for index in 0..120 {
        channel
            .queue_declare(
                &format!("{prefix}-{index:03}"),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    ..lapin::options::QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let (status, page) = json_as_guest(
        api,
        &format!("/api/queues/%2F?page=2&page_size=50&name={prefix}&sort=name&sort_reverse=true"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["filtered_count"], 120);
    assert_eq!(page["page_count"], 3);
    assert_eq!(page["item_count"], 50);
    assert_eq!(page["items"][0]["name"], format!("{prefix}-069"));
    let (status, bad) = json_as_guest(api, "/api/queues?page=0").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"], "bad_request");
    let (_, columns) = json_as_guest(
        api,
        &format!("/api/queues?name={prefix}-00[0-2]$&use_regex=true&columns=name,messages"),
    )
    .await;
    assert_eq!(columns.as_array().map(Vec::len), Some(3));
    assert_eq!(
        columns[0],
        serde_json::json!({"name": format!("{prefix}-000"), "messages": 0})
    );

    // Exchanges, connections (AMQP and MQTT side by side), vhosts, users.
    let (_, topic) = json_as_guest(api, "/api/exchanges/%2F/amq.topic").await;
    assert_eq!(topic["type"], "topic");
    assert_eq!(topic["durable"], true);
    let (_, exchanges) = json_as_guest(api, "/api/exchanges").await;
    assert!(exchanges
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "amq.fanout"));
    let (status, _) = json_as_guest(api, "/api/exchanges/%2F/no-such-exchange").await;
    assert_eq!(status, 404);
    let mqtt = rumqttc::MqttOptions::new(
        common::unique("api-mqtt"),
        broker.mqtt_addr().ip().to_string(),
        broker.mqtt_addr().port(),
    );
    let (mqtt_client, mut mqtt_loop) = rumqttc::AsyncClient::new(mqtt, 10);
    let mqtt_task = tokio::spawn(async move { while mqtt_loop.poll().await.is_ok() {} });
    let mut listed = Value::Null;
    for _ in 0..100 {
        let (_, value) = json_as_guest(api, "/api/connections").await;
        let ready = value.as_array().is_some_and(|all| {
            all.len() == 2 && all.iter().all(|c| c["user"].as_str() != Some(""))
        });
        if ready {
            listed = value;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let protocols: Vec<&str> = listed
        .as_array()
        .expect("two connections listed")
        .iter()
        .filter_map(|c| c["protocol"].as_str())
        .collect();
    assert!(protocols.contains(&"AMQP 0-9-1"), "{listed}");
    assert!(protocols.contains(&"MQTT 3.1.1"), "{listed}");
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["user"] == "guest" && c["vhost"] == "/"));
    let (_, vhosts) = json_as_guest(api, "/api/vhosts").await;
    assert_eq!(vhosts[0]["name"], "/");
    let (_, users) = json_as_guest(api, "/api/users").await;
    assert_eq!(users[0]["name"], "guest");
    assert_eq!(
        users[0]["hashing_algorithm"],
        "rabbit_password_hashing_sha256"
    );
    assert!(!users[0]["password_hash"].as_str().unwrap().is_empty());
    mqtt_client.disconnect().await.ok();
    mqtt_task.abort();
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn queues_exchanges_and_bindings_are_declared_and_deleted_over_http() {
    let (broker, api) = broker().await;
    let guest = ("guest", "guest");
    let queue = common::unique("api-put");
    let exchange = common::unique("api-x");
    let send = |method: &'static str, target: String, body: &'static str| async move {
        common::http::send_as(api, method, &target, guest, body)
            .await
            .unwrap()
    };
    let queue_path = format!("/api/queues/%2F/{queue}");
    let created = send(
        "PUT",
        queue_path.clone(),
        r#"{"durable":false,"arguments":{"x-message-ttl":60000}}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let again = send(
        "PUT",
        queue_path.clone(),
        r#"{"durable":false,"arguments":{"x-message-ttl":60000}}"#,
    )
    .await;
    assert_eq!(again.status, 204, "{}", again.body);
    let inequivalent = send("PUT", queue_path.clone(), r#"{"durable":true}"#).await;
    assert_eq!(inequivalent.status, 400, "{}", inequivalent.body);
    let (_, shown) = json_as_guest(api, &queue_path).await;
    assert_eq!(shown["arguments"]["x-message-ttl"], 60000);

    let exchange_path = format!("/api/exchanges/%2F/{exchange}");
    let created = send(
        "PUT",
        exchange_path.clone(),
        r#"{"type":"topic","durable":false}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let no_type = send("PUT", format!("{exchange_path}-2"), "{}").await;
    assert_eq!(no_type.status, 400);
    let bound = send(
        "POST",
        format!("/api/bindings/%2F/e/{exchange}/q/{queue}"),
        r#"{"routing_key":"sensor.#"}"#,
    )
    .await;
    assert_eq!(bound.status, 201, "{}", bound.body);
    let (_, bindings) = json_as_guest(api, "/api/bindings/%2F").await;
    assert!(bindings
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["source"] == exchange.as_str()
            && b["destination"] == queue.as_str()
            && b["destination_type"] == "queue"
            && b["routing_key"] == "sensor.#"));

    // A message published through the new binding shows in the queue, and a purge empties it.
    let connection = common::connect(&broker).await;
    let channel = common::confirm_channel(&connection).await;
    common::publish(&channel, &exchange, "sensor.kitchen", b"21.5").await;
    let (_, shown) = json_as_guest(api, &queue_path).await;
    assert_eq!(shown["messages_ready"], 1);
    // Publish and get over HTTP, as the management UI and rabbitmqadmin do.
    let published = send(
        "POST",
        format!("/api/exchanges/%2F/{exchange}/publish"),
        r#"{"routing_key":"sensor.hall","payload":"19.0","payload_encoding":"string","properties":{"content_type":"text/plain","headers":{"unit":"C"}}}"#,
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let routed: Value = serde_json::from_str(&published.body).unwrap();
    assert_eq!(routed["routed"], true);
    let unroutable = send(
        "POST",
        format!("/api/exchanges/%2F/{exchange}/publish"),
        r#"{"routing_key":"other","payload":"x","payload_encoding":"string","properties":{}}"#,
    )
    .await;
    let routed: Value = serde_json::from_str(&unroutable.body).unwrap();
    assert_eq!(routed["routed"], false);
    let peeked = send(
        "POST",
        format!("{queue_path}/get"),
        r#"{"count":5,"ackmode":"ack_requeue_true","encoding":"auto"}"#,
    )
    .await;
    assert_eq!(peeked.status, 200, "{}", peeked.body);
    let peeked: Value = serde_json::from_str(&peeked.body).unwrap();
    let peeked = peeked.as_array().unwrap();
    assert_eq!(peeked.len(), 2, "{peeked:?}");
    assert_eq!(peeked[0]["payload"], "21.5");
    assert_eq!(peeked[1]["payload"], "19.0");
    assert_eq!(peeked[1]["routing_key"], "sensor.hall");
    assert_eq!(peeked[1]["properties"]["content_type"], "text/plain");
    assert_eq!(peeked[1]["properties"]["headers"]["unit"], "C");
    let (_, shown) = json_as_guest(api, &queue_path).await;
    assert_eq!(shown["messages_ready"], 2, "requeued by ack_requeue_true");
    let taken = send(
        "POST",
        format!("{queue_path}/get"),
        r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"base64"}"#,
    )
    .await;
    let taken: Value = serde_json::from_str(&taken.body).unwrap();
    assert_eq!(taken[0]["payload_encoding"], "base64");
    assert_eq!(taken[0]["payload"], "MjEuNQ==");
    assert_eq!(taken[0]["message_count"], 1);
    let purged = send("DELETE", format!("{queue_path}/contents"), "").await;
    assert_eq!(purged.status, 204, "{}", purged.body);
    let (_, shown) = json_as_guest(api, &queue_path).await;
    assert_eq!(shown["messages_ready"], 0);

    let deleted = send("DELETE", exchange_path.clone(), "").await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let deleted = send("DELETE", queue_path.clone(), "").await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = send("DELETE", queue_path.clone(), "").await;
    assert_eq!(gone.status, 404);
    let (status, _) = json_as_guest(api, &queue_path).await;
    assert_eq!(status, 404);
    connection.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn health_checks_nodes_and_aliveness() {
    let (broker, api) = broker().await;
    let amqp_port = broker.amqp_addr().port();
    for path in [
        "/api/health/checks/alarms".to_string(),
        "/api/health/checks/local-alarms".to_string(),
        "/api/health/checks/virtual-hosts".to_string(),
        format!("/api/health/checks/port-listener/{amqp_port}"),
        "/api/health/checks/protocol-listener/amqp".to_string(),
        "/api/health/checks/protocol-listener/mqtt".to_string(),
        "/api/aliveness-test/%2F".to_string(),
    ] {
        let (status, body) = json_as_guest(api, &path).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("ok")),
            "{path}: {body}"
        );
    }
    let (status, body) = json_as_guest(api, "/api/health/checks/port-listener/1").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["missing"], 1);
    let (status, _) = json_as_guest(api, "/api/health/checks/protocol-listener/stomp").await;
    assert_eq!(status, 503);
    let (status, _) = json_as_guest(api, "/api/aliveness-test/no-such-vhost").await;
    assert_eq!(status, 404);
    let (_, nodes) = json_as_guest(api, "/api/nodes").await;
    let node = &nodes[0];
    assert_eq!(node["running"], true);
    assert!(node["mem_limit"].as_u64().unwrap() > 0);
    assert!(node["fd_total"].as_u64().unwrap() > 0);
    assert_eq!(node["mem_alarm"], false);
    let name = node["name"].as_str().unwrap().to_string();
    let (status, one) = json_as_guest(api, &format!("/api/nodes/{name}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], name.as_str());
    broker.shutdown().await;
}

/// Direct reply-to needs no queue in RabbitMQ, so `/api/queues` lists none for it; warren's
/// hidden reply queue stays out of the list too.
#[tokio::test]
async fn direct_reply_to_queues_are_not_listed() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::channel(&connection).await;
    let _consumer = channel
        .basic_consume(
            "amq.rabbitmq.reply-to",
            "replies",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (status, queues) = json_as_guest(api, "/api/queues").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|queue| queue["name"].as_str())
        .collect();
    assert!(
        names
            .iter()
            .all(|name| !name.starts_with("amq.rabbitmq.reply-to")),
        "{names:?}"
    );
    broker.shutdown().await;
}
