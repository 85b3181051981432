//! Users, vhosts, permissions and topic permissions as clients meet them, set up through the
//! management API the way an operator would: a user with permissions only on vhost `iot` and
//! write regex `^sensor\.` publishes to `sensor.x` but gets 403 on `other.x`; MQTT user
//! `iot:alice` lands in vhost `iot`, and a topic permission refuses her `alerts/#`
//! subscription (SUBACK 0x80 on v3, 0x87 on v5) and her publishes outside it (v5 PUBACK
//! 0x87, v3 disconnect); wrong passwords get 403 (AMQP), CONNACK 5 (v3) and 0x86 (v5); a
//! vhost the user has no permissions in is refused; deleting a vhost (or a user) closes its
//! connections; users and permissions survive a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::net::SocketAddr;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use mqtt_support::common::http::{get_as, send_as};
use mqtt_support::within;
use mqtt_support::{options3, options5, unique_id, Client3, Client5, External, TestBroker};
use serde_json::Value;

const GUEST: (&str, &str) = ("guest", "guest");

async fn broker_with(dir: Option<&std::path::Path>) -> (TestBroker, SocketAddr) {
    let mut options = TestBroker::options()
        .external(External::Never)
        .config(|config| config.management_port = Some(0));
    if let Some(dir) = dir {
        options = options.data_dir(dir);
    }
    let broker = options.start().await;
    let api = broker.in_process().management_addr().unwrap();
    (broker, api)
}

/// `method path` as guest; asserts the status is one of `expected`.
async fn api(address: SocketAddr, method: &str, path: &str, body: &str, expected: &[u16]) {
    let response = send_as(address, method, path, GUEST, body).await.unwrap();
    assert!(
        expected.contains(&response.status),
        "{method} {path}: {} {}",
        response.status,
        response.body
    );
}

/// Vhost `iot`, user alice (password alice-pw) with configure and write `^sensor\.` and
/// read `.*` there, and a topic permission on amq.topic reading only `sensor.` keys and
/// writing only `sensor.` keys; bob (bob-pw) with full permissions on `iot`, for MQTT
/// publishing.
async fn set_up_iot(address: SocketAddr) {
    api(address, "PUT", "/api/vhosts/iot", "", &[201]).await;
    api(
        address,
        "PUT",
        "/api/users/alice",
        r#"{"password":"alice-pw","tags":""}"#,
        &[201],
    )
    .await;
    api(
        address,
        "PUT",
        "/api/permissions/iot/alice",
        r#"{"configure":"^sensor\\.","write":"^sensor\\.","read":".*"}"#,
        &[201],
    )
    .await;
    api(
        address,
        "PUT",
        "/api/users/bob",
        r#"{"password":"bob-pw","tags":"monitoring"}"#,
        &[201],
    )
    .await;
    api(
        address,
        "PUT",
        "/api/permissions/iot/bob",
        r#"{"configure":".*","write":".*","read":".*"}"#,
        &[201],
    )
    .await;
}

async fn set_topic_permission(address: SocketAddr, user: &str, write: &str, read: &str) {
    let body = serde_json::json!({"exchange": "amq.topic", "write": write, "read": read});
    api(
        address,
        "PUT",
        &format!("/api/topic-permissions/iot/{user}"),
        &body.to_string(),
        &[201, 204],
    )
    .await;
}

fn uri(broker: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    format!("amqp://{user}:{password}@{}/{vhost}", broker.amqp_addr())
}

async fn amqp(
    broker: &TestBroker,
    user: &str,
    password: &str,
    vhost: &str,
) -> lapin::Result<Connection> {
    within(
        "AMQP connection",
        Connection::connect(
            &uri(broker, user, password, vhost),
            ConnectionProperties::default(),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_write_permission_allows_sensor_exchanges_only() {
    let (broker, address) = broker_with(None).await;
    set_up_iot(address).await;
    let alice = amqp(&broker, "alice", "alice-pw", "iot").await.unwrap();
    let channel = alice.create_channel().await.unwrap();
    channel
        .exchange_declare(
            "sensor.x",
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "sensor.x",
            "",
            BasicPublishOptions::default(),
            b"ok",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    within("confirm", confirm).await.unwrap();

    // Configure is checked too: `other.x` does not match `^sensor\.`.
    let refused = channel
        .exchange_declare(
            "other.x",
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("ACCESS_REFUSED"), "{text}");
    assert!(
        text.contains("access to exchange 'other.x' in vhost 'iot' refused for user 'alice'"),
        "{text}"
    );

    // An alternate exchange needs write on it: `other.x` is outside alice's write pattern.
    let channel = alice.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "alternate-exchange".into(),
        lapin::types::AMQPValue::LongString("other.x".into()),
    );
    let refused = channel
        .exchange_declare(
            "sensor.with-ae",
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            arguments,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("access to exchange 'other.x' in vhost 'iot' refused"),
        "{refused}"
    );

    // Publishing to an exchange outside the write pattern closes the channel with 403.
    let channel = alice.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "other.x",
            "",
            BasicPublishOptions::default(),
            b"no",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    let outcome = within("refusal", confirm).await;
    let closed = match outcome {
        Err(error) => error.to_string(),
        Ok(_) => within("channel close", channel.basic_qos(1, Default::default()))
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(closed.contains("ACCESS_REFUSED"), "{closed}");
    assert!(
        closed.contains("403") || closed.contains("ACCESS_REFUSED - access to exchange 'other.x'"),
        "{closed}"
    );
    // The connection carries on: a new channel publishes to sensor.x again.
    let channel = alice.create_channel().await.unwrap();
    channel
        .basic_publish(
            "sensor.x",
            "",
            BasicPublishOptions::default(),
            b"again",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    alice.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

/// Topic permissions apply to AMQP publishes to a topic exchange (by routing key) and to
/// queue bindings on it (by binding key); other exchanges are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_topic_permissions_check_routing_and_binding_keys() {
    let (broker, address) = broker_with(None).await;
    set_up_iot(address).await;
    set_topic_permission(address, "bob", "^sensor\\.", "^sensor\\.").await;
    let bob = amqp(&broker, "bob", "bob-pw", "iot").await.unwrap();
    let channel = bob.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish = |key: &'static str| {
        let channel = channel.clone();
        async move {
            let confirm = channel
                .basic_publish(
                    "amq.topic",
                    key,
                    BasicPublishOptions::default(),
                    b"t",
                    BasicProperties::default(),
                )
                .await?;
            within("confirm", confirm).await.map(|_| ())
        }
    };
    publish("sensor.t1").await.unwrap();
    let refused = publish("alerts.fire").await.unwrap_err().to_string();
    assert!(
        refused.contains(
            "access to topic 'alerts.fire' in exchange 'amq.topic' in vhost 'iot' refused for user 'bob'"
        ),
        "{refused}"
    );
    let channel = bob.create_channel().await.unwrap();
    channel
        .queue_declare("bob.q", Default::default(), FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            "bob.q",
            "amq.topic",
            "sensor.#",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let refused = channel
        .queue_bind(
            "bob.q",
            "amq.topic",
            "alerts.#",
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("ACCESS_REFUSED"), "{refused}");
    // A direct exchange has no topic permissions.
    let channel = bob.create_channel().await.unwrap();
    channel
        .basic_publish(
            "amq.direct",
            "alerts.fire",
            BasicPublishOptions::default(),
            b"d",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare("bob.q2", Default::default(), FieldTable::default())
        .await
        .unwrap();
    bob.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_refusals_for_bad_password_and_foreign_vhost() {
    let (broker, address) = broker_with(None).await;
    set_up_iot(address).await;
    let wrong = amqp(&broker, "alice", "wrong", "iot").await.unwrap_err();
    assert!(wrong.to_string().contains("ACCESS_REFUSED"), "{wrong}");
    // alice has no permissions on `/`: RabbitMQ refuses the vhost with 530.
    let foreign = amqp(&broker, "alice", "alice-pw", "%2f").await.unwrap_err();
    let text = foreign.to_string();
    assert!(
        text.contains("access to vhost '/' refused for user 'alice'"),
        "{text}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_vhost_user_names_and_topic_permissions() {
    let (broker, address) = broker_with(None).await;
    set_up_iot(address).await;
    set_topic_permission(address, "alice", "^sensor\\.", "^sensor\\.").await;

    // v3: `iot:alice` lands in vhost iot; `alerts/#` is refused (0x80), `sensor/#` granted.
    let mut options = options3(broker.mqtt_addr(), &unique_id("alice3"));
    options.set_credentials("iot:alice", "alice-pw");
    let mut alice = Client3::connect_with(options).await;
    let codes = alice
        .subscribe_raw("alerts/#", rumqttc::QoS::AtLeastOnce)
        .await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Failure]);
    alice.subscribe("sensor/#", rumqttc::QoS::AtLeastOnce).await;
    let connections = get_as(address, "/api/connections", "guest", "guest")
        .await
        .unwrap();
    let listed: Value = serde_json::from_str(&connections.body).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["user"] == "alice" && c["vhost"] == "iot" && c["protocol"] == "MQTT 3.1.1"),
        "{listed}"
    );
    // A message published in vhost iot reaches her subscription.
    let mut bob = Client5::connect_with({
        let mut options = options5(broker.mqtt_addr(), &unique_id("bob"));
        options.set_credentials("iot:bob", "bob-pw");
        options
    })
    .await;
    bob.publish(
        "sensor/t1",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        "21.5",
    )
    .await;
    let received = alice.recv().await;
    assert_eq!(received.topic, "sensor/t1");

    // v5: the refusal is 0x87 Not authorized; a refused publish gets PUBACK 0x87.
    let mut options = options5(broker.mqtt_addr(), &unique_id("alice5"));
    options.set_credentials("iot:alice", "alice-pw");
    let mut alice5 = Client5::connect_with(options).await;
    let codes = alice5
        .subscribe_raw("alerts/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    assert_eq!(
        codes,
        vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::NotAuthorized]
    );
    // rumqttc drops the connection after a refused subscription: a new one publishes.
    let mut options = options5(broker.mqtt_addr(), &unique_id("alice5p"));
    options.set_credentials("iot:alice", "alice-pw");
    let mut alice5 = Client5::connect_with(options).await;
    // alice may not write to amq.topic at all (her write pattern is `^sensor\.`).
    let reason = alice5.publish_qos1_raw("sensor/t1", "x").await;
    assert_eq!(
        reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
    );

    // v3 has no refusal code for a publish: the connection closes.
    alice
        .client
        .publish("sensor/t1", rumqttc::QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let closed = alice.closed().await;
    assert!(
        !matches!(closed, rumqttc::ConnectionError::ConnectionRefused(_)),
        "{closed:?}"
    );
    bob.disconnect().await;
    alice5.kill().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_bad_passwords_and_foreign_vhosts_are_refused() {
    let (broker, address) = broker_with(None).await;
    set_up_iot(address).await;
    let mut wrong3 = options3(broker.mqtt_addr(), &unique_id("wrong3"));
    wrong3.set_credentials("iot:alice", "nope");
    match Client3::try_connect_with(wrong3).await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected CONNACK 5, got {:?}", other.err()),
    }
    let mut wrong5 = options5(broker.mqtt_addr(), &unique_id("wrong5"));
    wrong5.set_credentials("iot:alice", "nope");
    match Client5::try_connect_with(wrong5).await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => assert_eq!(
            code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::BadUserNamePassword
        ),
        other => panic!("expected CONNACK 0x86, got {:?}", other.err()),
    }
    // Right password, but no permissions on `/` (no vhost prefix: mqtt.vhost, `/`).
    let mut foreign = options5(broker.mqtt_addr(), &unique_id("foreign"));
    foreign.set_credentials("alice", "alice-pw");
    match Client5::try_connect_with(foreign).await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => assert_eq!(
            code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized
        ),
        other => panic!("expected CONNACK 0x87, got {:?}", other.err()),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vhost_closes_its_connections_and_removes_its_queues() {
    let (broker, address) = broker_with(None).await;
    set_up_iot(address).await;
    let bob = amqp(&broker, "bob", "bob-pw", "iot").await.unwrap();
    let channel = bob.create_channel().await.unwrap();
    channel
        .queue_declare("readings", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let guest = amqp(&broker, "guest", "guest", "%2f").await.unwrap();
    api(address, "DELETE", "/api/vhosts/iot", "", &[204]).await;
    within("bob's connection to close", async {
        while bob.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(guest.status().connected(), "connections to / stay open");
    // Deleting a user closes its connections too.
    api(
        address,
        "PUT",
        "/api/permissions/%2F/bob",
        r#"{"configure":".*","write":".*","read":".*"}"#,
        &[201],
    )
    .await;
    let bob = amqp(&broker, "bob", "bob-pw", "%2f").await.unwrap();
    api(address, "DELETE", "/api/users/bob", "", &[204]).await;
    within("the deleted user's connection to close", async {
        while bob.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let queues = get_as(address, "/api/queues", "guest", "guest")
        .await
        .unwrap();
    assert!(!queues.body.contains("readings"), "{}", queues.body);
    let missing = get_as(address, "/api/vhosts/iot", "guest", "guest")
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let permissions = get_as(address, "/api/permissions", "guest", "guest")
        .await
        .unwrap();
    assert!(
        !permissions.body.contains("\"iot\""),
        "{}",
        permissions.body
    );
    guest.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_permissions_and_policies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, address) = broker_with(Some(dir.path())).await;
    set_up_iot(address).await;
    api(
        address,
        "PUT",
        "/api/policies/iot/ttl",
        r#"{"pattern":"^ttl\\.","definition":{"message-ttl":60000},"apply-to":"queues","priority":1}"#,
        &[201],
    )
    .await;
    broker.shutdown().await;

    let (broker, address) = broker_with(Some(dir.path())).await;
    let alice = amqp(&broker, "alice", "alice-pw", "iot").await.unwrap();
    let channel = alice.create_channel().await.unwrap();
    channel
        .queue_declare("sensor.ttl", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let policies = get_as(address, "/api/policies/iot", "guest", "guest")
        .await
        .unwrap();
    let policies: Value = serde_json::from_str(&policies.body).unwrap();
    assert_eq!(policies[0]["name"], "ttl");
    assert_eq!(policies[0]["definition"]["message-ttl"], 60000);
    alice.close(200, "bye").await.unwrap();
    broker.shutdown().await;
}
