//! The management API additions the web UI reads: message counters by protocol in
//! `/api/overview`, the MQTT sessions and retained messages (`/api/mqtt/...`), the clients' own
//! names in `/api/connections`, `amq.default` in exchange paths, and the UI's pages served
//! without login (while the API still asks for it, without the browser dialog for the UI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_support::common::http::{get, get_as, send_as};
use mqtt_support::{unique_id, within, Client3, TestBroker};
use serde_json::Value;

async fn broker() -> (TestBroker, SocketAddr) {
    mqtt_support::common::broker_with_management().await
}

async fn json(api: SocketAddr, path: &str) -> Value {
    let response = get_as(api, path, "guest", "guest").await.unwrap();
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_without_login_and_the_api_still_needs_one() {
    let (broker, api) = broker().await;
    for path in ["/", "/app.js", "/app.css"] {
        let response = get(api, path).await.unwrap();
        assert_eq!(response.status, 200, "{path}");
    }
    let page = get(api, "/").await.unwrap();
    assert!(page.head.to_ascii_lowercase().contains("text/html"));
    let api_response = get(api, "/api/overview").await.unwrap();
    assert_eq!(api_response.status, 401);
    assert!(api_response
        .head
        .to_ascii_lowercase()
        .contains("www-authenticate"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_sessions_retained_messages_and_counters_are_listed() {
    let (broker, api) = broker().await;
    let client_id = unique_id("uidevice");
    let mut options = mqtt_support::options3(broker.mqtt_addr(), &client_id);
    options.set_clean_session(false);
    let mut device = Client3::connect_with(options).await;
    device
        .subscribe("ui/+/temp", rumqttc::QoS::AtLeastOnce)
        .await;
    device.subscribe("ui/+/hum", rumqttc::QoS::AtMostOnce).await;
    device
        .publish("ui/kitchen/temp", rumqttc::QoS::AtLeastOnce, true, "21.5")
        .await;
    device.recv().await;

    let sessions = json(api, "/api/mqtt/sessions").await;
    let session = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["client_id"] == client_id.as_str())
        .unwrap_or_else(|| panic!("no session {client_id}: {sessions}"));
    assert_eq!(session["online"], true);
    assert_eq!(session["vhost"], "/");
    let filters: Vec<&str> = session["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["filter"].as_str())
        .collect();
    assert!(filters.contains(&"ui/+/temp"), "{session}");
    assert!(filters.contains(&"ui/+/hum"), "{session}");

    let retained = json(api, "/api/mqtt/retained").await;
    let message = retained
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["topic"] == "ui/kitchen/temp")
        .unwrap_or_else(|| panic!("not retained: {retained}"));
    assert_eq!(message["payload"], "21.5");
    assert_eq!(message["payload_bytes"], 4);

    // The topic published to is among the recent traffic.
    let topics = json(api, "/api/mqtt/topics").await;
    assert!(
        topics
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["topic"] == "ui/kitchen/temp" && t["seconds_ago"].as_f64().is_some()),
        "{topics}"
    );

    let connections = json(api, "/api/connections").await;
    let row = connections
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_properties"]["client_id"] == client_id.as_str())
        .unwrap_or_else(|| panic!("no connection with client id {client_id}: {connections}"));
    assert_eq!(row["protocol"], "MQTT 3.1.1");

    let overview = json(api, "/api/overview").await;
    let mqtt = &overview["message_stats_by_protocol"]["mqtt"];
    assert!(mqtt["publish"].as_u64().unwrap() >= 1, "{overview}");
    assert!(mqtt["deliver_get"].as_u64().unwrap() >= 1, "{overview}");
    assert!(overview["message_stats"]["publish"].as_u64().unwrap() >= 1);
    assert!(overview["uptime"].as_u64().is_some());
    let mqtt_objects = &overview["object_totals_by_protocol"]["mqtt"];
    assert_eq!(mqtt_objects["connections"], 1, "{overview}");
    assert!(mqtt_objects["queues"].as_u64().unwrap() >= 1, "{overview}");
    assert!(
        mqtt_objects["consumers"].as_u64().unwrap() >= 1,
        "{overview}"
    );
    assert_eq!(
        overview["object_totals_by_protocol"]["amqp"]["connections"], 0,
        "{overview}"
    );

    // Offline, the session stays listed with what waits for it.
    device.kill().await;
    let offline = within("the session to go offline", async {
        loop {
            let sessions = json(api, "/api/mqtt/sessions").await;
            let offline = sessions
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["client_id"] == client_id.as_str() && s["online"] == false)
                .cloned();
            if let Some(offline) = offline {
                break offline;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Each subscription with the QoS it was granted, from the session's record.
    let granted: Vec<(String, u64)> = offline["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["filter"].as_str().unwrap().to_string(),
                s["qos"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        granted,
        [("ui/+/hum".to_string(), 0), ("ui/+/temp".to_string(), 1)],
        "{offline}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_exchange_is_amq_default_in_paths() {
    let (broker, api) = broker().await;
    let put = send_as(
        api,
        "PUT",
        "/api/queues/%2F/ui-default-exchange",
        ("guest", "guest"),
        r#"{"durable":false}"#,
    )
    .await
    .unwrap();
    assert!(put.status == 201 || put.status == 204, "{}", put.body);
    let published = send_as(
        api,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        ("guest", "guest"),
        r#"{"properties":{},"routing_key":"ui-default-exchange","payload":"hi","payload_encoding":"string"}"#,
    )
    .await
    .unwrap();
    assert_eq!(published.status, 200, "{}", published.body);
    assert!(
        published.body.contains("\"routed\":true"),
        "{}",
        published.body
    );
    let exchange = json(api, "/api/exchanges/%2F/amq.default").await;
    assert_eq!(exchange["name"], "");
    // The queue's counters, which the UI turns into rates.
    let queue = json(api, "/api/queues/%2F/ui-default-exchange").await;
    assert_eq!(queue["message_stats"]["publish"], 1, "{queue}");
    assert_eq!(queue["message_stats"]["deliver_get"], 0, "{queue}");
    assert_eq!(queue["type"], "classic");
    broker.shutdown().await;
}
