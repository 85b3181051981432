//! MQTT 5.0 with rumqttc's v5 client (and the raw client where a library would hide the
//! wire): QoS round trips, topic aliases both ways, properties (user properties, content type,
//! response topic, correlation data), message expiry, shared subscriptions, Receive Maximum.
//!
//! Run against another broker with `WARREN_TEST_EXTERNAL_MQTT=host:port` (see
//! `tests/mqtt_support/mod.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use mqtt_support::raw::{self, Connect, RawClient, Version};
use mqtt_support::{
    options5, p5, text, unique_id, unique_topic, within, Client5, External, QoS5 as QoS, TestBroker,
};

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// MQTT 5 QoS 0/1/2 in every publish × subscription combination: delivered once, unchanged,
/// at the lower QoS (MQTT 5.0 §3.8.4); PUBACK / PUBREC-PUBREL-PUBCOMP complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos_0_1_2_round_trips_deliver_at_the_lower_qos() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("qos5");
    let mut subscriber = Client5::connect(broker.mqtt_addr(), &unique_id("qos5-sub")).await;
    for sub_qos in 0..=2 {
        subscriber
            .subscribe(&format!("{base}/sub{sub_qos}"), qos(sub_qos))
            .await;
    }
    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("qos5-pub")).await;
    for sub_qos in 0..=2u8 {
        for pub_qos in 0..=2u8 {
            publisher
                .publish(
                    &format!("{base}/sub{sub_qos}"),
                    qos(pub_qos),
                    false,
                    format!("pub{pub_qos}-sub{sub_qos}"),
                )
                .await;
        }
    }
    let mut received = BTreeMap::new();
    while received.len() < 9 {
        let publish = subscriber.recv().await;
        let payload = text(&publish.payload);
        let topic = text(&publish.topic);
        assert!(
            received
                .insert(payload.clone(), (topic, publish.qos))
                .is_none(),
            "{payload:?} delivered twice"
        );
    }
    for sub_qos in 0..=2u8 {
        for pub_qos in 0..=2u8 {
            let payload = format!("pub{pub_qos}-sub{sub_qos}");
            let (topic, delivered_qos) = received
                .get(&payload)
                .unwrap_or_else(|| panic!("{payload} not delivered"));
            assert_eq!(topic, &format!("{base}/sub{sub_qos}"), "topic of {payload}");
            assert_eq!(
                *delivered_qos,
                qos(pub_qos.min(sub_qos)),
                "QoS of {payload} (published at {pub_qos}, subscribed at {sub_qos})"
            );
        }
    }
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// Client → server topic aliases (MQTT 5.0 §3.3.2.3.4): the broker announces a Topic Alias
/// Maximum ≥ 1 in CONNACK; a PUBLISH with topic + alias 1 sets the alias, later PUBLISHes with
/// an empty topic and alias 1 go to the same topic; a second alias works independently, and
/// re-pointing an alias at another topic takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_from_client_to_server() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("alias-in");
    let (topic_a, topic_b) = (format!("{base}/a"), format!("{base}/b"));
    let mut subscriber = Client5::connect(broker.mqtt_addr(), &unique_id("alias-in-sub")).await;
    subscriber
        .subscribe(&format!("{base}/#"), QoS::AtLeastOnce)
        .await;
    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("alias-in-pub")).await;
    let alias_max = publisher
        .connack
        .properties
        .as_ref()
        .and_then(|p| p.topic_alias_max)
        .unwrap_or(0);
    assert!(
        alias_max >= 2,
        "the broker announces a Topic Alias Maximum ≥ 2 in CONNACK (got {alias_max})"
    );
    let alias = |n: u16| p5::PublishProperties {
        topic_alias: Some(n),
        ..Default::default()
    };
    let sends: [(&str, u16, &str); 6] = [
        (&topic_a, 1, "a-with-topic"),
        ("", 1, "a-by-alias-1"),
        (&topic_b, 2, "b-with-topic"),
        ("", 1, "a-by-alias-2"),
        ("", 2, "b-by-alias"),
        (&topic_b, 1, "alias-1-now-b"),
    ];
    for (topic, n, payload) in sends {
        publisher
            .publish_with(topic, QoS::AtLeastOnce, false, payload, Some(alias(n)))
            .await;
    }
    publisher
        .publish_with("", QoS::AtLeastOnce, false, "b-by-alias-1", Some(alias(1)))
        .await;
    let expected = [
        (&topic_a, "a-with-topic"),
        (&topic_a, "a-by-alias-1"),
        (&topic_b, "b-with-topic"),
        (&topic_a, "a-by-alias-2"),
        (&topic_b, "b-by-alias"),
        (&topic_b, "alias-1-now-b"),
        (&topic_b, "b-by-alias-1"),
    ];
    for (topic, payload) in expected {
        let publish = subscriber.recv().await;
        assert_eq!(
            (text(&publish.topic), text(&publish.payload)),
            (topic.clone(), payload.to_string())
        );
    }
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// Server → client topic aliases: a client that announces Topic Alias Maximum 5 may be sent
/// aliases (never above 5, never an unknown alias with an empty topic — rumqttc resolves them,
/// so every message must arrive with its full topic); a client that announces none is never
/// sent an alias (MQTT 5.0 §3.1.2.11.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_from_server_to_client_only_when_allowed() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("alias-out");
    let mut options = options5(broker.mqtt_addr(), &unique_id("alias-out-yes"));
    options.set_topic_alias_max(Some(5));
    let mut with_aliases = Client5::connect_with(options).await;
    with_aliases.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut without = Client5::connect(broker.mqtt_addr(), &unique_id("alias-out-no")).await;
    without.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("alias-out-pub")).await;
    for i in 0..5 {
        publisher
            .publish(&topic, QoS::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    let mut aliases_used = Vec::new();
    for i in 0..5 {
        let publish = with_aliases.recv().await;
        assert_eq!(text(&publish.payload), format!("m{i}"));
        assert_eq!(
            text(&publish.topic),
            topic,
            "topic of m{i} (alias resolved)"
        );
        let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
        if let Some(alias) = alias {
            assert!((1..=5).contains(&alias), "alias {alias} outside 1..=5");
        }
        aliases_used.push(alias);

        let publish = without.recv().await;
        assert_eq!(text(&publish.payload), format!("m{i}"));
        assert_eq!(text(&publish.topic), topic);
        assert_eq!(
            publish.properties.as_ref().and_then(|p| p.topic_alias),
            None,
            "no alias for a client that did not allow them"
        );
    }
    println!("aliases the broker used towards the client: {aliases_used:?}");
    with_aliases.disconnect().await;
    without.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// MQTT 5 publication properties are forwarded unchanged (MQTT 5.0 §3.3.2.3): user properties
/// in order (duplicates kept), content type, response topic, correlation data, payload format
/// indicator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_properties_are_forwarded() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("props");
    let mut subscriber = Client5::connect(broker.mqtt_addr(), &unique_id("props-sub")).await;
    subscriber.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("props-pub")).await;
    let user_properties = vec![
        ("device".to_string(), "kitchen-1".to_string()),
        ("unit".to_string(), "celsius".to_string()),
        ("device".to_string(), "second value, same key".to_string()),
    ];
    let properties = p5::PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".to_string()),
        response_topic: Some(format!("{topic}/reply")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr-42\xff")),
        user_properties: user_properties.clone(),
        ..Default::default()
    };
    publisher
        .publish_with(
            &topic,
            QoS::AtLeastOnce,
            false,
            "{\"t\":21.5}",
            Some(properties),
        )
        .await;
    let publish = subscriber.recv().await;
    assert_eq!(text(&publish.payload), "{\"t\":21.5}");
    let props = publish.properties.expect("properties are forwarded");
    assert_eq!(
        props.user_properties, user_properties,
        "user properties, in order"
    );
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.response_topic, Some(format!("{topic}/reply")));
    assert_eq!(
        props.correlation_data.as_deref(),
        Some(&b"\x00\x01corr-42\xff"[..])
    );
    assert_eq!(props.payload_format_indicator, Some(1));
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// Message expiry (MQTT 5.0 §3.3.2.3.3): for a persistent session whose client is offline, a
/// message published with expiry 1 s is dropped once 2.5 s have passed, while one with expiry
/// 60 s is delivered on reconnect with the remaining lifetime (less than the 60 s it started
/// with, since it waited in the broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_expiry_drops_expired_messages_for_offline_sessions() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("expiry");
    let client_id = unique_id("expiry");
    let options = |clean: bool, expiry: u32| {
        let mut options = options5(broker.mqtt_addr(), &client_id);
        options.set_clean_start(clean);
        let mut props = p5::ConnectProperties::new();
        props.session_expiry_interval = Some(expiry);
        options.set_connect_properties(props);
        options
    };
    let mut subscriber = Client5::connect_with(options(true, 300)).await;
    subscriber.subscribe(&topic, QoS::AtLeastOnce).await;
    subscriber.disconnect().await;

    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("expiry-pub")).await;
    let expiring = |seconds: u32| p5::PublishProperties {
        message_expiry_interval: Some(seconds),
        ..Default::default()
    };
    publisher
        .publish_with(
            &topic,
            QoS::AtLeastOnce,
            false,
            "short-lived",
            Some(expiring(1)),
        )
        .await;
    publisher
        .publish_with(
            &topic,
            QoS::AtLeastOnce,
            false,
            "long-lived",
            Some(expiring(60)),
        )
        .await;
    // Let the short-lived message expire while the session's client is away.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut again = Client5::connect_with(options(false, 300)).await;
    assert!(again.connack.session_present);
    let first = again.recv().await;
    assert_eq!(
        text(&first.payload),
        "long-lived",
        "the expired message must not be delivered (it would come first)"
    );
    let remaining = first
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval)
        .expect("a message with an expiry is delivered with its remaining Message Expiry Interval");
    assert!(
        (1..=59).contains(&remaining),
        "remaining expiry {remaining} s: it started at 60 s and waited 2.5 s in the broker"
    );
    // Nothing else (in particular not the expired message) is queued behind it.
    publisher
        .publish(&topic, QoS::AtLeastOnce, false, "marker")
        .await;
    assert_eq!(text(&again.recv().await.payload), "marker");
    again.disconnect().await;
    publisher.disconnect().await;
    Client5::connect_with(options(true, 0))
        .await
        .disconnect()
        .await;
    broker.shutdown().await;
}

/// Shared subscriptions (MQTT 5.0 §4.8.2): three members of `$share/g1/<base>/jobs/#` split
/// 300 QoS 1 messages: every message is delivered to exactly one member, none is lost, and each
/// member gets some (evenness is not asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_splits_messages_among_members() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("shared");
    let filter = format!("$share/g1/{base}/jobs/#");
    let mut members = Vec::new();
    for i in 0..3 {
        let mut member =
            Client5::connect(broker.mqtt_addr(), &unique_id(&format!("share{i}"))).await;
        member.subscribe(&filter, QoS::AtLeastOnce).await;
        members.push(member);
    }
    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("share-pub")).await;
    for n in 0..300 {
        publisher
            .publish(
                &format!("{base}/jobs/{}", n % 7),
                QoS::AtLeastOnce,
                false,
                n.to_string(),
            )
            .await;
    }
    let mut per_member: Vec<Vec<u32>> = vec![Vec::new(); 3];
    let mut total = 0;
    while total < 300 {
        let (i, publish) = within("a shared-subscription delivery", async {
            let [a, b, c] = &mut members[..] else {
                unreachable!()
            };
            tokio::select! {
                p = a.recv() => (0, p),
                p = b.recv() => (1, p),
                p = c.recv() => (2, p),
            }
        })
        .await;
        let n: u32 = text(&publish.payload).parse().expect("numeric payload");
        per_member[i].push(n);
        total += 1;
    }
    let counts: Vec<usize> = per_member.iter().map(Vec::len).collect();
    println!("messages per member: {counts:?}");
    let union: BTreeSet<u32> = per_member.iter().flatten().copied().collect();
    assert_eq!(
        union.len(),
        300,
        "300 deliveries must be 300 distinct messages (no duplicates, none lost)"
    );
    assert_eq!(
        union,
        (0..300).collect(),
        "exactly the 300 published messages"
    );
    for (i, count) in counts.iter().enumerate() {
        assert!(*count > 0, "member {i} received none of the 300 messages");
    }
    for member in members {
        member.disconnect().await;
    }
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// Receive Maximum (MQTT 5.0 §3.3.4, §4.9): a client that sends more QoS 2 PUBLISHes than the
/// server's announced Receive Maximum without completing them (no PUBREL) is disconnected
/// with reason code 0x93 (Receive Maximum exceeded). Raw socket, so nothing paces the sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_receive_maximum_gets_disconnect_0x93() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("receive-max");
    let connect = Connect::new(Version::V5, &unique_id("receive-max"));
    let (mut client, props) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    // Absent means 65,535 (MQTT 5.0 §3.2.2.3.3).
    let receive_maximum = props
        .numbers
        .get(&raw::PROP_RECEIVE_MAXIMUM)
        .copied()
        .unwrap_or(65_535);
    println!("server Receive Maximum: {receive_maximum}");
    let mut burst = Vec::new();
    for packet_id in 1..=receive_maximum + 1 {
        let packet_id = u16::try_from(packet_id).unwrap_or(u16::MAX);
        burst.extend(raw::publish(
            Version::V5,
            topic.as_bytes(),
            2,
            packet_id,
            b"x",
        ));
    }
    client.send(&burst).await;
    let packets = client.until_closed().await;
    let pubrecs = packets.iter().filter(|p| p.kind() == raw::PUBREC).count();
    let last = packets.last().map(|p| (p.kind(), p.disconnect_reason()));
    assert_eq!(
        last,
        Some((raw::DISCONNECT, Some(raw::RC_RECEIVE_MAXIMUM_EXCEEDED))),
        "the connection ends with DISCONNECT 0x93 (got {} PUBRECs first; last packet {last:?})",
        pubrecs
    );
    assert!(
        pubrecs <= receive_maximum as usize,
        "{pubrecs} PUBRECs for a Receive Maximum of {receive_maximum}"
    );
    mqtt_support::assert_broker_works(broker.mqtt_addr()).await;
    broker.shutdown().await;
}

/// Completing QoS 2 exchanges frees the quota: a client that sends Receive Maximum QoS 2
/// PUBLISHes, completes them with PUBREL/PUBCOMP, and sends as many again is not disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_qos2_exchanges_free_the_receive_maximum_quota() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("receive-max-ok");
    let connect = Connect::new(Version::V5, &unique_id("receive-max-ok"));
    let (mut client, props) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let receive_maximum = props
        .numbers
        .get(&raw::PROP_RECEIVE_MAXIMUM)
        .copied()
        .unwrap_or(65_535)
        .min(2000) as u16;
    for round in 0..2 {
        let mut burst = Vec::new();
        for packet_id in 1..=receive_maximum {
            burst.extend(raw::publish(
                Version::V5,
                topic.as_bytes(),
                2,
                packet_id,
                b"x",
            ));
        }
        client.send(&burst).await;
        let mut pubrels = Vec::new();
        for _ in 0..receive_maximum {
            let packet = client.read_packet().await.expect("PUBREC");
            assert_eq!(packet.kind(), raw::PUBREC, "round {round}: {packet:?}");
            pubrels.extend(raw::packet((raw::PUBREL << 4) | 0x02, &packet.body[..2]));
        }
        client.send(&pubrels).await;
        for _ in 0..receive_maximum {
            let packet = client.read_packet().await.expect("PUBCOMP");
            assert_eq!(packet.kind(), raw::PUBCOMP, "round {round}: {packet:?}");
        }
    }
    client.send(&raw::pingreq()).await;
    let pong = client.read_packet().await.expect("PINGRESP");
    assert_eq!(pong.kind(), raw::PINGRESP);
    client.send(&raw::disconnect()).await;
    broker.shutdown().await;
}
