//! MQTT 3.1.1 basics with rumqttc: QoS 0/1/2 round trips (and QoS downgrade to the
//! subscription's), the wildcard matching rules, retained messages.
//!
//! Run against another broker with `WARREN_TEST_EXTERNAL_MQTT=host:port` (see
//! `tests/mqtt_support/mod.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::collections::{BTreeMap, BTreeSet};

use mqtt_support::{options3, text, unique_id, unique_topic, Client3, External, TestBroker};
use rumqttc::QoS;

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Every combination of publish QoS and subscription QoS: the message arrives once, with its
/// payload and topic unchanged, at the lower of the two QoS levels (MQTT 3.1.1 §3.8.4); the
/// publisher's QoS 1 / 2 exchanges (PUBACK; PUBREC, PUBREL, PUBCOMP) complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_2_round_trips_deliver_at_the_lower_qos() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("qos");
    let mut subscriber = Client3::connect(broker.mqtt_addr(), &unique_id("qos-sub")).await;
    for sub_qos in 0..=2 {
        subscriber
            .subscribe(&format!("{base}/sub{sub_qos}"), qos(sub_qos))
            .await;
    }
    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("qos-pub")).await;
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
        assert!(
            received
                .insert(payload.clone(), (publish.topic.clone(), publish.qos))
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

/// The topic-filter rules of MQTT 3.1.1 §4.7 (examples from the spec): `#` matches the parent
/// level too (`sport/#` matches `sport`), `+` matches exactly one level including an empty one
/// (`+/+` matches `/finance`, `sport/+` matches `sport/`), and filters starting with a wildcard
/// never match topics starting with `$` (§4.7.2: `#` does not receive `$SYS/...`, `+/...` does
/// not match `$...`), while a filter that names the `$` level does.
///
/// Each filter has its own subscriber; every topic is published once (QoS 1, in order, from one
/// client) and then a marker every subscriber is subscribed to, so that when a subscriber has
/// seen the marker it has seen everything it is going to get for the table's topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_matching_table() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    // The table's topics are fixed names (the rules are about the top levels), so against a
    // shared external broker the payload carries this run's tag and anything else is ignored.
    let tag = unique_id("wildcards");
    let marker_topic = unique_topic("wildcards-marker");
    let topics = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "/finance",
        "finance",
        "x/wtest/clients",
        "$SYS/wtest/clients",
        "$wtest/clients",
    ];
    let table: &[(&str, &[&str])] = &[
        ("sport/tennis/player1", &["sport/tennis/player1"]),
        (
            "sport/tennis/player1/#",
            &["sport/tennis/player1", "sport/tennis/player1/ranking"],
        ),
        (
            "sport/#",
            &[
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
            ],
        ),
        ("sport/tennis/+", &["sport/tennis/player1"]),
        ("sport/+", &["sport/", "sport/tennis"]),
        ("+/+", &["sport/", "sport/tennis", "/finance"]),
        ("/+", &["/finance"]),
        ("/#", &["/finance"]),
        ("+", &["sport", "finance"]),
        (
            "#",
            &[
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "/finance",
                "finance",
                "x/wtest/clients",
            ],
        ),
        (
            "+/tennis/#",
            &[
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
            ],
        ),
        ("+/wtest/clients", &["x/wtest/clients"]),
        ("+/+/+", &["sport/tennis/player1", "x/wtest/clients"]),
        ("$wtest/#", &["$wtest/clients"]),
        ("$wtest/+", &["$wtest/clients"]),
        ("finance/#", &["finance"]),
    ];

    let mut subscribers = Vec::new();
    for (i, (filter, _)) in table.iter().enumerate() {
        let mut client = Client3::connect(broker.mqtt_addr(), &unique_id(&format!("wc{i}"))).await;
        client.subscribe(filter, QoS::AtLeastOnce).await;
        client.subscribe(&marker_topic, QoS::AtLeastOnce).await;
        subscribers.push(client);
    }
    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("wc-pub")).await;
    for topic in topics {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, format!("{tag}|{topic}"))
            .await;
    }
    publisher
        .publish(
            &marker_topic,
            QoS::AtLeastOnce,
            false,
            format!("{tag}|marker"),
        )
        .await;

    let mut failures = Vec::new();
    for ((filter, expected), client) in table.iter().zip(subscribers.iter_mut()) {
        let mut got = Vec::new();
        loop {
            let publish = client.recv().await;
            let payload = text(&publish.payload);
            let Some(topic) = payload.strip_prefix(&format!("{tag}|")) else {
                continue; // another test's traffic on a shared broker
            };
            if topic == "marker" {
                break;
            }
            assert_eq!(publish.topic, topic, "delivered topic name for {filter:?}");
            got.push(topic.to_string());
        }
        let got_set: BTreeSet<_> = got.iter().map(String::as_str).collect();
        let expected_set: BTreeSet<_> = expected.iter().copied().collect();
        if got_set != expected_set || got.len() != got_set.len() {
            failures.push(format!(
                "filter {filter:?}: expected {expected_set:?}, received {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for client in subscribers {
        client.disconnect().await;
    }
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// A retained message is stored and delivered (with the RETAIN flag) to a subscriber that
/// arrives later, through an exact filter and through a wildcard filter; a zero-byte retained
/// publish is delivered to current subscribers as usual and clears it, so a subscriber that
/// arrives after that gets nothing retained (MQTT 3.1.1 §3.3.1.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_reaches_late_subscribers_until_cleared() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("retained");
    let topic = format!("{base}/room1/temp");
    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("ret-pub")).await;
    publisher
        .publish(&topic, QoS::AtLeastOnce, true, "21.5")
        .await;

    let mut exact = Client3::connect(broker.mqtt_addr(), &unique_id("ret-exact")).await;
    exact.subscribe(&topic, QoS::AtLeastOnce).await;
    let publish = exact.recv().await;
    assert_eq!(text(&publish.payload), "21.5");
    assert_eq!(publish.topic, topic);
    assert!(
        publish.retain,
        "a retained message is delivered with RETAIN set"
    );

    let mut wildcard = Client3::connect(broker.mqtt_addr(), &unique_id("ret-wild")).await;
    wildcard
        .subscribe(&format!("{base}/+/temp"), QoS::AtLeastOnce)
        .await;
    let publish = wildcard.recv().await;
    assert_eq!(
        text(&publish.payload),
        "21.5",
        "retained via a wildcard filter"
    );
    assert_eq!(publish.topic, topic);
    assert!(publish.retain);
    wildcard.disconnect().await;

    // Clear it: zero bytes, RETAIN set.
    publisher.publish(&topic, QoS::AtLeastOnce, true, "").await;
    let publish = exact.recv().await;
    assert!(
        publish.payload.is_empty(),
        "the clearing publish reaches the current subscriber, got {:?}",
        text(&publish.payload)
    );
    exact.disconnect().await;

    for filter in [topic.clone(), format!("{base}/#")] {
        let mut late = Client3::connect(broker.mqtt_addr(), &unique_id("ret-late")).await;
        late.subscribe(&filter, QoS::AtLeastOnce).await;
        // Anything retained would be sent on subscribe, before this later publish.
        publisher
            .publish(&topic, QoS::AtLeastOnce, false, "after-clear")
            .await;
        let publish = late.recv().await;
        assert_eq!(
            text(&publish.payload),
            "after-clear",
            "nothing retained is left for {filter:?} after the clearing publish"
        );
        assert!(!publish.retain);
        late.disconnect().await;
    }
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// A retained message published at QoS 0 is also kept, and a newer retained message replaces
/// the older one (only the last is delivered to a new subscriber).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_retained_message_replaces_older() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("retained-replace");
    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("ret2-pub")).await;
    publisher
        .publish(&topic, QoS::AtMostOnce, true, "old")
        .await;
    publisher
        .publish(&topic, QoS::AtLeastOnce, true, "new")
        .await;
    let mut late = Client3::connect(broker.mqtt_addr(), &unique_id("ret2-late")).await;
    late.subscribe(&topic, QoS::AtLeastOnce).await;
    publisher
        .publish(&topic, QoS::AtLeastOnce, false, "live")
        .await;
    let first = late.recv().await;
    assert_eq!(text(&first.payload), "new");
    assert!(first.retain);
    let second = late.recv().await;
    assert_eq!(
        text(&second.payload),
        "live",
        "only the latest retained message is kept"
    );
    // Leave nothing behind on a shared broker.
    publisher.publish(&topic, QoS::AtLeastOnce, true, "").await;
    late.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// After UNSUBSCRIBE (and its UNSUBACK) the filter no longer delivers; the client's other
/// subscriptions still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("unsubscribe");
    let mut subscriber = Client3::connect(broker.mqtt_addr(), &unique_id("unsub-sub")).await;
    subscriber
        .subscribe(&format!("{base}/a/#"), QoS::AtLeastOnce)
        .await;
    subscriber
        .subscribe(&format!("{base}/b"), QoS::AtLeastOnce)
        .await;
    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("unsub-pub")).await;
    publisher
        .publish(&format!("{base}/a/1"), QoS::AtLeastOnce, false, "a-before")
        .await;
    assert_eq!(text(&subscriber.recv().await.payload), "a-before");
    subscriber.unsubscribe(&format!("{base}/a/#")).await;
    publisher
        .publish(&format!("{base}/a/1"), QoS::AtLeastOnce, false, "a-after")
        .await;
    publisher
        .publish(&format!("{base}/b"), QoS::AtLeastOnce, false, "b-after")
        .await;
    assert_eq!(
        text(&subscriber.recv().await.payload),
        "b-after",
        "nothing arrives through the removed subscription"
    );
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// `mqtt.allow_anonymous = false`: a client without credentials is refused with a CONNACK
/// refusal, as is one with a wrong password; one with the default user's credentials
/// connects.
#[tokio::test]
async fn anonymous_clients_are_refused_when_not_allowed() {
    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.mqtt_allow_anonymous = false)
        .start()
        .await;
    let anonymous = options3(broker.mqtt_addr(), &unique_id("anonymous"));
    let refused = Client3::try_connect_with(anonymous).await;
    assert!(
        matches!(refused, Err(rumqttc::ConnectionError::ConnectionRefused(_))),
        "{:?}",
        refused.err()
    );
    let mut wrong = options3(broker.mqtt_addr(), &unique_id("wrong"));
    wrong.set_credentials("guest", "nope");
    assert!(Client3::try_connect_with(wrong).await.is_err());
    let mut guest = options3(broker.mqtt_addr(), &unique_id("guest"));
    guest.set_credentials("guest", "guest");
    let client = Client3::connect_with(guest).await;
    client.disconnect().await;
    broker.shutdown().await;
}
