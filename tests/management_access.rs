//! The management API's administration endpoints as tools use them: users, vhosts,
//! permissions, topic permissions, policies (and the effective policy a queue shows),
//! consumers, bindings between exchanges and their deletion, closing a connection, the tag
//! rules (monitoring reads everything and writes nothing, management sees only its vhosts),
//! and definitions: exported from one warren and imported into a fresh one unchanged, and a
//! definitions file exported from RabbitMQ 3.10 imported with its users logging in with
//! their RabbitMQ passwords.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::http::send_as;
use common::{External, TestBroker};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};

const GUEST: (&str, &str) = ("guest", "guest");

async fn broker() -> (TestBroker, SocketAddr) {
    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.management_port = Some(0))
        .start()
        .await;
    let api = broker.in_process().management_addr().unwrap();
    (broker, api)
}

/// `method path` as `who` with `body`; returns the status and the body as JSON (Null when
/// empty).
async fn call(
    api: SocketAddr,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let response = send_as(api, method, path, who, &body).await.unwrap();
    let value = if response.body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", response.body))
    };
    (response.status, value)
}

async fn guest(api: SocketAddr, method: &str, path: &str, body: Value) -> (u16, Value) {
    call(api, GUEST, method, path, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_permissions() {
    let (broker, api) = broker().await;
    // Users: created (201), updated (204), read with RabbitMQ's fields, deleted (204, then 404).
    let (status, _) = guest(
        api,
        "PUT",
        "/api/users/alice",
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = guest(
        api,
        "PUT",
        "/api/users/alice",
        json!({"password": "pw2", "tags": "management,policymaker"}),
    )
    .await;
    assert_eq!(status, 204);
    let (status, alice) = guest(api, "GET", "/api/users/alice", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["tags"], json!(["management", "policymaker"]));
    assert_eq!(alice["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert_eq!(
        base64_len(alice["password_hash"].as_str().unwrap()),
        36,
        "salt and SHA-256"
    );
    let (_, users) = guest(api, "GET", "/api/users", Value::Null).await;
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "alice"));
    let (status, _) = guest(api, "PUT", "/api/users/nopass", json!({"tags": ""})).await;
    assert_eq!(status, 400, "a new user needs a password or a hash");

    // Vhosts.
    let (status, _) = guest(
        api,
        "PUT",
        "/api/vhosts/iot",
        json!({"description": "devices", "tags": "edge"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = guest(api, "PUT", "/api/vhosts/iot", Value::Null).await;
    assert_eq!(status, 204);
    let (_, iot) = guest(api, "GET", "/api/vhosts/iot", Value::Null).await;
    assert_eq!(iot["name"], "iot");
    assert_eq!(iot["messages"], 0);
    let (_, vhosts) = guest(api, "GET", "/api/vhosts", Value::Null).await;
    let names: Vec<&str> = vhosts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, vec!["/", "iot"]);

    // Permissions; the creator of a vhost got full permissions there.
    let (status, _) = guest(
        api,
        "PUT",
        "/api/permissions/iot/alice",
        json!({"configure": "^sensor\\.", "write": ".*", "read": ".*"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, one) = guest(api, "GET", "/api/permissions/iot/alice", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(
        one,
        json!({"user": "alice", "vhost": "iot", "configure": "^sensor\\.", "write": ".*", "read": ".*"})
    );
    let (_, all) = guest(api, "GET", "/api/permissions", Value::Null).await;
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["user"] == "guest" && p["vhost"] == "iot"));
    let (_, by_vhost) = guest(api, "GET", "/api/vhosts/iot/permissions", Value::Null).await;
    assert_eq!(by_vhost.as_array().unwrap().len(), 2);
    let (_, by_user) = guest(api, "GET", "/api/users/alice/permissions", Value::Null).await;
    assert_eq!(by_user.as_array().unwrap().len(), 1);
    let (status, _) = guest(
        api,
        "PUT",
        "/api/permissions/nowhere/alice",
        json!({"configure": "", "write": "", "read": ""}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = guest(
        api,
        "PUT",
        "/api/permissions/iot/alice",
        json!({"configure": "(", "write": "", "read": ""}),
    )
    .await;
    assert_eq!(status, 400, "a pattern that does not compile");

    // Topic permissions.
    let (status, _) = guest(
        api,
        "PUT",
        "/api/topic-permissions/iot/alice",
        json!({"exchange": "amq.topic", "write": "^sensor\\.", "read": ".*"}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, topic) = guest(api, "GET", "/api/topic-permissions/iot/alice", Value::Null).await;
    assert_eq!(topic[0]["exchange"], "amq.topic");
    assert_eq!(topic[0]["write"], "^sensor\\.");
    let (_, topics) = guest(api, "GET", "/api/topic-permissions", Value::Null).await;
    assert_eq!(topics.as_array().unwrap().len(), 1);
    let (status, _) = guest(
        api,
        "DELETE",
        "/api/topic-permissions/iot/alice",
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);

    // alice (management) sees only iot; she may not write users.
    let alice_pw = ("alice", "pw2");
    let (_, seen) = call(api, alice_pw, "GET", "/api/vhosts", &Value::Null).await;
    let names: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, vec!["iot"]);
    let (status, _) = call(api, alice_pw, "GET", "/api/queues/%2F", &Value::Null).await;
    assert_eq!(status, 404, "a management user does not see foreign vhosts");
    let (status, _) = call(
        api,
        alice_pw,
        "PUT",
        "/api/users/mallory",
        &json!({"password": "x"}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(api, alice_pw, "GET", "/api/users", &Value::Null).await;
    assert_eq!(status, 401);
    // Nor single objects of foreign vhosts, nor their bindings.
    guest(api, "PUT", "/api/queues/%2F/private", json!({})).await;
    for path in [
        "/api/queues/%2F/private",
        "/api/exchanges/%2F/amq.direct",
        "/api/bindings/%2F",
        "/api/queues/%2F/private/bindings",
    ] {
        let (status, _) = call(api, alice_pw, "GET", path, &Value::Null).await;
        assert_eq!(
            status, 404,
            "a management user reads {path} of a foreign vhost"
        );
    }
    // A policymaker changes policies only in vhosts she has access to.
    let policy = json!({"pattern": "^sensor", "definition": {"max-length": 5}});
    let (status, _) = call(api, alice_pw, "PUT", "/api/policies/%2F/p", &policy).await;
    assert_eq!(status, 401);
    let (status, _) = call(api, alice_pw, "PUT", "/api/policies/iot/p", &policy).await;
    assert_eq!(status, 201);
    // Her writes follow her permissions in the vhost, as RabbitMQ checks them.
    let (status, _) = call(api, alice_pw, "PUT", "/api/queues/iot/sensor.q", &json!({})).await;
    assert_eq!(status, 201);
    let (status, _) = call(api, alice_pw, "PUT", "/api/queues/iot/other.q", &json!({})).await;
    assert_eq!(status, 401, "configure `^sensor\\.` does not cover other.q");
    let (status, _) = call(api, alice_pw, "PUT", "/api/queues/%2F/sensor.q", &json!({})).await;
    assert_eq!(status, 401, "no permissions on /");
    let (status, _) = call(
        api,
        alice_pw,
        "DELETE",
        "/api/queues/iot/sensor.q",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 204);

    // Deletions.
    let (status, _) = guest(api, "DELETE", "/api/permissions/iot/alice", Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = guest(api, "DELETE", "/api/permissions/iot/alice", Value::Null).await;
    assert_eq!(status, 404);
    let (status, _) = guest(api, "DELETE", "/api/users/alice", Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = guest(api, "DELETE", "/api/users/alice", Value::Null).await;
    assert_eq!(status, 404);
    let (status, _) = guest(api, "DELETE", "/api/vhosts/iot", Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = guest(api, "GET", "/api/vhosts/iot", Value::Null).await;
    assert_eq!(status, 404);
    broker.shutdown().await;
}

fn base64_len(encoded: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(|bytes| bytes.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitoring_user_reads_everything_and_writes_nothing() {
    let (broker, api) = broker().await;
    guest(
        api,
        "PUT",
        "/api/users/watcher",
        json!({"password": "w", "tags": "monitoring"}),
    )
    .await;
    guest(api, "PUT", "/api/vhosts/other", Value::Null).await;
    guest(api, "PUT", "/api/queues/other/q1", json!({"durable": true})).await;
    let watcher = ("watcher", "w");
    for path in [
        "/api/overview",
        "/api/queues",
        "/api/queues/other",
        "/api/exchanges",
        "/api/bindings",
        "/api/connections",
        "/api/channels",
        "/api/consumers",
        "/api/vhosts",
        "/api/policies",
        "/api/nodes",
    ] {
        let (status, _) = call(api, watcher, "GET", path, &Value::Null).await;
        assert_eq!(status, 200, "monitoring reads {path}");
    }
    let (_, queues) = call(api, watcher, "GET", "/api/queues", &Value::Null).await;
    assert!(queues.as_array().unwrap().iter().any(|q| q["name"] == "q1"));
    for (method, path, body) in [
        ("PUT", "/api/queues/other/q2", json!({})),
        ("DELETE", "/api/queues/other/q1", Value::Null),
        ("PUT", "/api/exchanges/other/e", json!({"type": "direct"})),
        ("PUT", "/api/vhosts/v3", Value::Null),
        ("PUT", "/api/users/x", json!({"password": "x"})),
        (
            "PUT",
            "/api/permissions/other/watcher",
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        ),
        (
            "PUT",
            "/api/policies/other/p",
            json!({"pattern": ".*", "definition": {"max-length": 1}}),
        ),
        ("POST", "/api/definitions", json!({})),
        ("GET", "/api/definitions", Value::Null),
        ("GET", "/api/users", Value::Null),
    ] {
        let (status, body) = call(api, watcher, method, path, &body).await;
        assert_eq!(status, 401, "monitoring may not {method} {path}: {body}");
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reach_queues_and_exchanges() {
    let (broker, api) = broker().await;
    guest(
        api,
        "PUT",
        "/api/queues/%2F/ttl.existing",
        json!({"durable": false}),
    )
    .await;
    let (status, _) = guest(
        api,
        "PUT",
        "/api/policies/%2F/ttl",
        json!({"pattern": "^ttl\\.", "definition": {"message-ttl": 60000, "max-length": 10}, "priority": 1, "apply-to": "queues"}),
    )
    .await;
    assert_eq!(status, 201);
    guest(
        api,
        "PUT",
        "/api/policies/%2F/ttl-strong",
        json!({"pattern": "^ttl\\.strong", "definition": {"message-ttl": 5}, "priority": 5, "apply-to": "all"}),
    )
    .await;
    guest(
        api,
        "PUT",
        "/api/policies/%2F/ae",
        json!({"pattern": "^ae\\.", "definition": {"alternate-exchange": "unrouted"}, "apply-to": "exchanges"}),
    )
    .await;
    guest(
        api,
        "PUT",
        "/api/queues/%2F/ttl.later",
        json!({"durable": false}),
    )
    .await;
    guest(
        api,
        "PUT",
        "/api/queues/%2F/ttl.strong",
        json!({"durable": false}),
    )
    .await;
    guest(
        api,
        "PUT",
        "/api/exchanges/%2F/ae.x",
        json!({"type": "topic"}),
    )
    .await;
    let (_, existing) = guest(api, "GET", "/api/queues/%2F/ttl.existing", Value::Null).await;
    assert_eq!(
        existing["policy"], "ttl",
        "an existing queue gets a new policy"
    );
    assert_eq!(
        existing["effective_policy_definition"],
        json!({"message-ttl": 60000, "max-length": 10})
    );
    let (_, later) = guest(api, "GET", "/api/queues/%2F/ttl.later", Value::Null).await;
    assert_eq!(later["policy"], "ttl", "a later queue gets it");
    let (_, strong) = guest(api, "GET", "/api/queues/%2F/ttl.strong", Value::Null).await;
    assert_eq!(strong["policy"], "ttl-strong", "the higher priority wins");
    let (_, exchange) = guest(api, "GET", "/api/exchanges/%2F/ae.x", Value::Null).await;
    assert_eq!(exchange["policy"], "ae");
    let (_, listed) = guest(api, "GET", "/api/policies/%2F", Value::Null).await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, vec!["ae", "ttl", "ttl-strong"]);
    assert_eq!(listed[1]["apply-to"], "queues");
    assert_eq!(listed[1]["priority"], 1);
    let (status, body) = guest(
        api,
        "PUT",
        "/api/policies/%2F/bad",
        json!({"pattern": ".*", "definition": {"no-such-key": 1}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("not recognised"),
        "{body}"
    );
    let (status, _) = guest(api, "DELETE", "/api/policies/%2F/ttl-strong", Value::Null).await;
    assert_eq!(status, 204);
    let (_, strong) = guest(api, "GET", "/api/queues/%2F/ttl.strong", Value::Null).await;
    assert_eq!(strong["policy"], "ttl", "the next match takes over");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_bindings_and_closing_a_connection() {
    let (broker, api) = broker().await;
    let connection = Connection::connect(&broker.amqp_uri(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(7, BasicQosOptions::default())
        .await
        .unwrap();
    channel
        .queue_declare(
            "watched",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            "watched",
            "tag-1",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_, consumers) = guest(api, "GET", "/api/consumers/%2F", Value::Null).await;
    let found = consumers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer_tag"] == "tag-1")
        .cloned()
        .unwrap_or_else(|| panic!("{consumers}"));
    assert_eq!(found["queue"]["name"], "watched");
    assert_eq!(found["ack_required"], true);
    assert_eq!(found["prefetch_count"], 7);
    assert_eq!(found["channel_details"]["user"], "guest");

    // Another connection's exclusive queue is locked to the API, as in RabbitMQ.
    channel
        .queue_declare(
            "mine-only",
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (status, body) = guest(
        api,
        "POST",
        "/api/queues/%2F/mine-only/get",
        json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
    )
    .await;
    assert_eq!(status, 405, "{body}");

    // Exchange-to-exchange bindings: create, list, delete.
    guest(
        api,
        "PUT",
        "/api/exchanges/%2F/src",
        json!({"type": "topic"}),
    )
    .await;
    guest(
        api,
        "PUT",
        "/api/exchanges/%2F/dst",
        json!({"type": "fanout"}),
    )
    .await;
    let (status, _) = guest(
        api,
        "POST",
        "/api/bindings/%2F/e/src/e/dst",
        json!({"routing_key": "a.#"}),
    )
    .await;
    assert_eq!(status, 201);
    let (_, between) = guest(api, "GET", "/api/bindings/%2F/e/src/e/dst", Value::Null).await;
    assert_eq!(between[0]["routing_key"], "a.#");
    let props = between[0]["properties_key"].as_str().unwrap().to_string();
    let (_, sources) = guest(
        api,
        "GET",
        "/api/exchanges/%2F/src/bindings/source",
        Value::Null,
    )
    .await;
    assert_eq!(sources.as_array().unwrap().len(), 1);
    let (status, _) = guest(
        api,
        "DELETE",
        &format!("/api/bindings/%2F/e/src/e/dst/{}", encode(&props)),
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let (_, between) = guest(api, "GET", "/api/bindings/%2F/e/src/e/dst", Value::Null).await;
    assert_eq!(between, json!([]));
    // Queue bindings: create, list on the queue, delete.
    guest(
        api,
        "POST",
        "/api/bindings/%2F/e/src/q/watched",
        json!({"routing_key": "k"}),
    )
    .await;
    let (_, on_queue) = guest(api, "GET", "/api/queues/%2F/watched/bindings", Value::Null).await;
    assert!(on_queue
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["source"] == "src"));
    let (status, _) = guest(
        api,
        "DELETE",
        "/api/bindings/%2F/e/src/q/watched/k",
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);

    // Closing the connection through the API: the client sees CONNECTION_FORCED.
    let (_, connections) = guest(api, "GET", "/api/connections", Value::Null).await;
    let name = connections[0]["name"].as_str().unwrap().to_string();
    let (status, one) = guest(
        api,
        "GET",
        &format!("/api/connections/{}", encode(&name)),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["user"], "guest");
    let (status, _) = guest(
        api,
        "DELETE",
        &format!("/api/connections/{}", encode(&name)),
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let ended = common::within("the consumer to end", consumer.next()).await;
    assert!(!matches!(ended, Some(Ok(_))), "{ended:?}");
    common::within("the connection to close", async {
        while connection.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let (status, _) = guest(api, "DELETE", "/api/connections/nobody", Value::Null).await;
    assert_eq!(status, 404);
    broker.shutdown().await;
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The parts of an export that must come through an import unchanged.
fn comparable(definitions: &Value) -> Value {
    let mut copy = definitions.clone();
    if let Value::Object(object) = &mut copy {
        object.remove("product_version");
    }
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_move_between_brokers_unchanged() {
    let (source, source_api) = broker().await;
    guest(source_api, "PUT", "/api/vhosts/iot", Value::Null).await;
    guest(
        source_api,
        "PUT",
        "/api/users/alice",
        json!({"password": "alice-pw", "tags": "management"}),
    )
    .await;
    guest(
        source_api,
        "PUT",
        "/api/permissions/iot/alice",
        json!({"configure": "^sensor\\.", "write": ".*", "read": ".*"}),
    )
    .await;
    guest(
        source_api,
        "PUT",
        "/api/topic-permissions/iot/alice",
        json!({"exchange": "amq.topic", "write": "^sensor\\.", "read": ".*"}),
    )
    .await;
    guest(
        source_api,
        "PUT",
        "/api/policies/iot/ttl",
        json!({"pattern": "^ttl\\.", "definition": {"message-ttl": 1000}, "apply-to": "queues"}),
    )
    .await;
    guest(
        source_api,
        "PUT",
        "/api/exchanges/iot/readings",
        json!({"type": "topic", "durable": true}),
    )
    .await;
    guest(
        source_api,
        "PUT",
        "/api/exchanges/iot/archive",
        json!({"type": "fanout", "durable": true}),
    )
    .await;
    guest(
        source_api,
        "PUT",
        "/api/queues/iot/ttl.temperatures",
        json!({"durable": true, "arguments": {"x-max-priority": 10}}),
    )
    .await;
    guest(
        source_api,
        "POST",
        "/api/bindings/iot/e/readings/q/ttl.temperatures",
        json!({"routing_key": "sensor.#"}),
    )
    .await;
    guest(
        source_api,
        "POST",
        "/api/bindings/iot/e/readings/e/archive",
        json!({"routing_key": "#"}),
    )
    .await;
    let (status, exported) = guest(source_api, "GET", "/api/definitions", Value::Null).await;
    assert_eq!(status, 200);
    for key in [
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert!(exported[key].is_array(), "{key} missing: {exported}");
    }
    assert_eq!(exported["queues"][0]["name"], "ttl.temperatures");
    let (status, per_vhost) = guest(source_api, "GET", "/api/definitions/iot", Value::Null).await;
    assert_eq!(status, 200);
    assert!(
        per_vhost["users"].is_null(),
        "a vhost export carries no users"
    );
    assert!(per_vhost["queues"][0]["vhost"].is_null());
    source.shutdown().await;

    let (target, target_api) = broker().await;
    let (status, body) = guest(target_api, "POST", "/api/definitions", exported.clone()).await;
    assert!(status == 204 || status == 201, "{status} {body}");
    let (_, imported) = guest(target_api, "GET", "/api/definitions", Value::Null).await;
    assert_eq!(comparable(&imported), comparable(&exported));
    // alice logs in to the new broker with her password (the hash moved with her).
    let alice = Connection::connect(
        &format!("amqp://alice:alice-pw@{}/iot", target.amqp_addr()),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    alice.close(200, "bye").await.unwrap();
    // A per-vhost file imports into another vhost.
    guest(target_api, "PUT", "/api/vhosts/copy", Value::Null).await;
    let (status, body) = guest(target_api, "POST", "/api/definitions/copy", per_vhost).await;
    assert!(status == 204 || status == 201, "{status} {body}");
    let (_, copied) = guest(
        target_api,
        "GET",
        "/api/queues/copy/ttl.temperatures",
        Value::Null,
    )
    .await;
    assert_eq!(copied["policy"], "ttl");
    target.shutdown().await;
}

/// A definitions file exported from RabbitMQ 3.10.8 (`tests/fixtures/`, with how it was made)
/// imports as it is: its users log in with their RabbitMQ passwords, with their tags and
/// permissions (a PCRE lookahead in a topic permission included), and its vhosts, queues,
/// exchanges, bindings and policies exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_export_imports_and_its_users_log_in() {
    let (broker, api) = broker().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rabbitmq-3.10-definitions.json");
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (status, body) = guest(api, "POST", "/api/definitions", exported).await;
    assert_eq!(status, 204, "{body}");

    // Passwords: the hashes RabbitMQ made check against the passwords it was given.
    let alice = Connection::connect(
        &format!("amqp://alice:alice-pw@{}/iot", broker.amqp_addr()),
        ConnectionProperties::default(),
    )
    .await
    .expect("alice logs in with her RabbitMQ password");
    let channel = alice.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let readings = channel
        .queue_declare("sensor.readings", passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(readings.message_count(), 0);
    alice.close(200, "bye").await.unwrap();
    let (status, whoami) = call(api, ("bob", "bob-pw"), "GET", "/api/whoami", &Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(whoami["tags"], json!(["monitoring"]));
    let (status, _) = call(
        api,
        ("carol", "carol-pw"),
        "GET",
        "/api/users",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "carol is an administrator");
    let (status, _) = call(api, ("carol", "wrong"), "GET", "/api/users", &Value::Null).await;
    assert_eq!(status, 401);

    // The topology and the policies.
    let (_, orders) = guest(api, "GET", "/api/queues/%2F/orders", Value::Null).await;
    assert_eq!(orders["arguments"]["x-max-priority"], 10);
    let (_, ttl) = guest(api, "GET", "/api/queues/%2F/ttl.events", Value::Null).await;
    assert_eq!(ttl["policy"], "ttl-policy");
    assert_eq!(ttl["effective_policy_definition"]["message-ttl"], 60000);
    let (_, sensor) = guest(api, "GET", "/api/exchanges/iot/sensor.data", Value::Null).await;
    assert_eq!(sensor["policy"], "ae-policy");
    let (_, bindings) = guest(api, "GET", "/api/bindings/iot", Value::Null).await;
    assert!(
        bindings
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["source"] == "sensor.data" && b["destination"] == "unrouted"),
        "{bindings}"
    );
    let (_, topic) = guest(api, "GET", "/api/topic-permissions/iot/alice", Value::Null).await;
    assert_eq!(topic[0]["read"], "^(?!alerts\\.).*");

    // The lookahead works: alice may bind sensor keys on amq.topic but not alerts ones.
    let alice = Connection::connect(
        &format!("amqp://alice:alice-pw@{}/iot", broker.amqp_addr()),
        ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = alice.create_channel().await.unwrap();
    channel
        .queue_declare(
            "sensor.mine",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            "sensor.mine",
            "amq.topic",
            "sensor.#",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let refused = channel
        .queue_bind(
            "sensor.mine",
            "amq.topic",
            "alerts.fire",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
    alice.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}
