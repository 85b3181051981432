//! MQTT connection and session behaviour: will messages, persistent sessions (clean session
//! false), client take-over, keep-alive enforcement.
//!
//! Run against another broker with `WARREN_TEST_EXTERNAL_MQTT=host:port` (see
//! `tests/mqtt_support/mod.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::time::{Duration, Instant};

use mqtt_support::raw::{self, Connect, RawClient, Version};
use mqtt_support::{
    options3, options5, text, unique_id, unique_topic, Client3, Client5, External, TestBroker,
};
use rumqttc::QoS;

/// The will message is published when a client's connection ends without DISCONNECT (here the
/// client's socket is simply dropped, as when a device loses power), and is discarded when the
/// client disconnects cleanly (MQTT 3.1.1 §3.1.2.5, §3.14.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_socket_drop_but_not_on_clean_disconnect() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let base = unique_topic("will");
    let mut watcher = Client3::connect(broker.mqtt_addr(), &unique_id("will-watch")).await;
    watcher
        .subscribe(&format!("{base}/#"), QoS::AtLeastOnce)
        .await;

    // Abnormal end: the socket goes away without DISCONNECT.
    let mut options = options3(broker.mqtt_addr(), &unique_id("will-crash"));
    options.set_last_will(rumqttc::LastWill::new(
        format!("{base}/crashed"),
        "device crashed",
        QoS::AtLeastOnce,
        false,
    ));
    let crashing = Client3::connect_with(options).await;
    crashing.kill().await;
    let will = watcher.recv().await;
    assert_eq!(will.topic, format!("{base}/crashed"));
    assert_eq!(text(&will.payload), "device crashed");

    // Clean end: DISCONNECT, then the broker closes the connection; no will.
    let mut options = options3(broker.mqtt_addr(), &unique_id("will-clean"));
    options.set_last_will(rumqttc::LastWill::new(
        format!("{base}/clean"),
        "must not be published",
        QoS::AtLeastOnce,
        false,
    ));
    let clean = Client3::connect_with(options).await;
    clean.disconnect().await;
    let mut other = Client3::connect(broker.mqtt_addr(), &unique_id("will-marker")).await;
    other
        .publish(&format!("{base}/clean"), QoS::AtLeastOnce, false, "marker")
        .await;
    let next = watcher.recv().await;
    assert_eq!(
        text(&next.payload),
        "marker",
        "a client that sent DISCONNECT must not have its will published"
    );
    other.disconnect().await;
    watcher.disconnect().await;
    broker.shutdown().await;
}

/// The same with a raw socket: a CONNECT carrying a will, then the TCP connection is dropped
/// without DISCONNECT; the will (QoS 0, retain off) reaches a subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_raw_socket_is_dropped() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("will-raw");
    let mut watcher = Client3::connect(broker.mqtt_addr(), &unique_id("willraw-watch")).await;
    watcher.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut connect = Connect::new(Version::V311, &unique_id("willraw"));
    connect.will = Some((topic.clone(), b"gone".to_vec(), 0, false));
    let (client, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    drop(client);
    let will = watcher.recv().await;
    assert_eq!(text(&will.payload), "gone");
    assert_eq!(will.topic, topic);
    watcher.disconnect().await;
    broker.shutdown().await;
}

/// A persistent session (clean session = false) keeps its QoS 1 subscription while the client
/// is away and queues what is published meanwhile; on reconnect the CONNACK says
/// session present and all 100 messages arrive, once each, in order (MQTT 3.1.1 §3.1.2.4,
/// §4.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_receives_messages_published_while_offline() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("persistent");
    let client_id = unique_id("persistent");
    let persistent = |clean: bool| {
        let mut options = options3(broker.mqtt_addr(), &client_id);
        options.set_clean_session(clean);
        options
    };

    // Start from no session at all (a clean connect discards any earlier one).
    Client3::connect_with(persistent(true))
        .await
        .disconnect()
        .await;
    let mut first = Client3::connect_with(persistent(false)).await;
    assert!(
        !first.connack.session_present,
        "no session existed, so CONNACK must not say session present"
    );
    first.subscribe(&topic, QoS::AtLeastOnce).await;
    first.disconnect().await;

    let mut publisher = Client3::connect(broker.mqtt_addr(), &unique_id("persistent-pub")).await;
    for i in 0..100 {
        publisher
            .publish(&topic, QoS::AtLeastOnce, false, format!("msg-{i}"))
            .await;
    }
    publisher.disconnect().await;

    let mut again = Client3::connect_with(persistent(false)).await;
    assert!(
        again.connack.session_present,
        "reconnecting with clean session = false must resume the session (session present)"
    );
    let mut received = Vec::new();
    while received.len() < 100 {
        let publish = again.recv().await;
        assert_eq!(publish.topic, topic);
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        received.push(text(&publish.payload));
    }
    let expected: Vec<String> = (0..100).map(|i| format!("msg-{i}")).collect();
    assert_eq!(
        received, expected,
        "all 100 queued messages, once each, in order"
    );
    again.disconnect().await;

    // Clean up the session (a clean connect discards it), so a shared broker keeps nothing.
    let cleanup = Client3::connect_with(persistent(true)).await;
    assert!(
        !cleanup.connack.session_present,
        "clean session = true must not resume the stored session"
    );
    cleanup.disconnect().await;
    broker.shutdown().await;
}

/// A clean-session connect discards the stored session: its subscriptions are gone, so what is
/// published afterwards is not delivered to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_discards_stored_subscriptions() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("clean-discards");
    let client_id = unique_id("clean-discards");
    let mut options = options3(broker.mqtt_addr(), &client_id);
    options.set_clean_session(false);
    let mut first = Client3::connect_with(options).await;
    first.subscribe(&topic, QoS::AtLeastOnce).await;
    first.disconnect().await;

    let mut options = options3(broker.mqtt_addr(), &client_id);
    options.set_clean_session(true);
    let mut clean = Client3::connect_with(options).await;
    assert!(!clean.connack.session_present);
    let marker = unique_topic("clean-discards-marker");
    clean.subscribe(&marker, QoS::AtLeastOnce).await;
    clean
        .publish(&topic, QoS::AtLeastOnce, false, "old subscription")
        .await;
    clean
        .publish(&marker, QoS::AtLeastOnce, false, "marker")
        .await;
    assert_eq!(
        text(&clean.recv().await.payload),
        "marker",
        "the discarded session's subscription must not deliver"
    );
    clean.disconnect().await;
    broker.shutdown().await;
}

/// Client take-over (MQTT 3.1.1 §3.1.4): a second connection with the same client id makes the
/// broker close the first one; the second works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_with_same_client_id_takes_over_v311() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let client_id = unique_id("takeover3");
    let topic = unique_topic("takeover3");
    let mut first = Client3::connect(broker.mqtt_addr(), &client_id).await;
    let mut second = Client3::connect(broker.mqtt_addr(), &client_id).await;
    let error = first.closed().await;
    println!("first connection ended with: {error:?}");
    second.subscribe(&topic, QoS::AtLeastOnce).await;
    second
        .publish(&topic, QoS::AtLeastOnce, false, "second works")
        .await;
    assert_eq!(text(&second.recv().await.payload), "second works");
    second.disconnect().await;
    broker.shutdown().await;
}

/// Client take-over in MQTT 5 as a rumqttc user sees it: the first connection ends and the
/// second works. (The DISCONNECT 0x8E itself is checked byte for byte by
/// `takeover_v5_raw_first_connection_gets_disconnect_0x8e`: rumqttc 0.24 cannot parse the
/// short form of DISCONNECT — reason code without a property length, which MQTT 5.0 §3.14.2.2.1
/// allows — and reports such a DISCONNECT as "connection closed by peer".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_with_same_client_id_takes_over_v5() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let client_id = unique_id("takeover5");
    let topic = unique_topic("takeover5");
    let mut first = Client5::connect(broker.mqtt_addr(), &client_id).await;
    let mut second = Client5::connect(broker.mqtt_addr(), &client_id).await;
    match first.closed().await {
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code,
            ..
        }) => assert_eq!(
            reason_code,
            mqtt_support::p5::DisconnectReasonCode::SessionTakenOver,
            "DISCONNECT reason for the taken-over connection"
        ),
        rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::Io(error)) => {
            println!("first connection closed ({error}); see the raw test for the reason code")
        }
        other => panic!("expected the first connection to be closed, got {other:?}"),
    }
    second
        .subscribe(&topic, mqtt_support::QoS5::AtLeastOnce)
        .await;
    second
        .publish(
            &topic,
            mqtt_support::QoS5::AtLeastOnce,
            false,
            "second works",
        )
        .await;
    assert_eq!(text(&second.recv().await.payload), "second works");
    second.disconnect().await;
    broker.shutdown().await;
}

/// The same with raw sockets, so nothing in a client library can hide what the broker sent:
/// the first connection receives exactly one DISCONNECT (0x8E) and then EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_v5_raw_first_connection_gets_disconnect_0x8e() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let connect = Connect::new(Version::V5, &unique_id("takeover5raw"));
    let (mut first, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let (mut second, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let packets = first.until_closed().await;
    let reasons = kinds_and_reasons(&packets);
    assert_eq!(
        reasons,
        vec![(raw::DISCONNECT, Some(raw::RC_SESSION_TAKEN_OVER))],
        "the taken-over connection gets DISCONNECT 0x8E, then EOF"
    );
    second.send(&raw::pingreq()).await;
    let pong = second
        .read_packet()
        .await
        .expect("PINGRESP on the new connection");
    assert_eq!(pong.kind(), raw::PINGRESP);
    second.send(&raw::disconnect()).await;
    broker.shutdown().await;
}

/// A broker shutdown ends every MQTT connection, idle ones included: a v5 client receives
/// DISCONNECT 0x8B (server shutting down) and then EOF, and the shutdown completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_v5_clients_disconnect_0x8b() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    if broker.is_external() {
        return; // Shutting down someone else's broker is not this test's business.
    }
    let connect = Connect::new(Version::V5, &unique_id("shutdown5raw"));
    let (mut client, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let (packets, ()) = tokio::join!(client.until_closed(), broker.shutdown());
    let reasons = kinds_and_reasons(&packets);
    assert_eq!(
        reasons,
        vec![(raw::DISCONNECT, Some(raw::RC_SERVER_SHUTTING_DOWN))],
        "an idle v5 connection gets DISCONNECT 0x8B at shutdown, then EOF"
    );
}

/// Keep-alive enforcement end to end (MQTT 3.1.1 §3.1.2.10): a client that said keep-alive
/// 1 s and then stays silent is disconnected by the broker. The 1.5 × rule itself is tested
/// with a controlled clock in `mqtt::connection`'s unit tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_timeout_disconnects_a_silent_client() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let mut connect = Connect::new(Version::V311, &unique_id("keepalive"));
    connect.keep_alive = 1;
    let (mut client, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let packets = client.until_closed_within(Duration::from_secs(10)).await;
    assert!(
        packets.is_empty(),
        "an MQTT 3.1.1 server sends nothing before closing: {packets:?}"
    );
    broker.shutdown().await;
}

/// MQTT 5: the silent client is also disconnected (optionally with DISCONNECT 0x8D, keep alive
/// timeout, MQTT 5.0 §3.1.2.10), and a client that pings within its keep-alive stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_v5_silent_client_closed_pinging_client_kept() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let mut connect = Connect::new(Version::V5, &unique_id("keepalive5"));
    connect.keep_alive = 1;
    let (mut silent, props) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    // A server may impose its own keep-alive (Server Keep Alive); the test needs it to be 1 s.
    if let Some(server_keep_alive) = props.numbers.get(&0x13) {
        assert_eq!(
            *server_keep_alive, 1,
            "Server Keep Alive overrides the asked 1 s"
        );
    }
    let mut connect = Connect::new(Version::V5, &unique_id("keepalive5-ping"));
    connect.keep_alive = 1;
    let (mut pinging, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let pinger = tokio::spawn(async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            pinging.send(&raw::pingreq()).await;
            let pong = pinging.read_packet().await;
            assert_eq!(
                pong.map(|p| p.kind()),
                Some(raw::PINGRESP),
                "a client that pings every 0.4 s (keep-alive 1 s) is kept"
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        pinging.send(&raw::disconnect()).await;
    });

    let packets = silent.until_closed_within(Duration::from_secs(10)).await;
    let kinds: Vec<_> = packets
        .iter()
        .map(|p| (p.kind(), p.disconnect_reason()))
        .collect();
    assert!(
        kinds.is_empty() || kinds == vec![(raw::DISCONNECT, Some(0x8D))],
        "only DISCONNECT 0x8D (keep alive timeout) may precede the close: {kinds:?}"
    );
    mqtt_support::within("the pinging client", pinger)
        .await
        .expect("pinging client task");
    broker.shutdown().await;
}

/// Reconnecting a persistent MQTT 5 session (clean start false, session expiry) resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expiry_keeps_session_until_clean_start() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let client_id = unique_id("session5");
    let topic = unique_topic("session5");
    let options = |clean: bool, expiry: u32| {
        let mut options = options5(broker.mqtt_addr(), &client_id);
        options.set_clean_start(clean);
        let mut props = mqtt_support::p5::ConnectProperties::new();
        props.session_expiry_interval = Some(expiry);
        options.set_connect_properties(props);
        options
    };
    let mut first = Client5::connect_with(options(true, 300)).await;
    assert!(!first.connack.session_present);
    first
        .subscribe(&topic, mqtt_support::QoS5::AtLeastOnce)
        .await;
    first.disconnect().await;

    let mut publisher = Client5::connect(broker.mqtt_addr(), &unique_id("session5-pub")).await;
    publisher
        .publish(&topic, mqtt_support::QoS5::AtLeastOnce, false, "queued")
        .await;
    publisher.disconnect().await;

    let mut again = Client5::connect_with(options(false, 300)).await;
    assert!(
        again.connack.session_present,
        "session present after clean start = false"
    );
    assert_eq!(text(&again.recv().await.payload), "queued");
    again.disconnect().await;

    let cleanup = Client5::connect_with(options(true, 0)).await;
    assert!(
        !cleanup.connack.session_present,
        "clean start discards the session"
    );
    cleanup.disconnect().await;
    broker.shutdown().await;
}

/// Each packet's type and, for DISCONNECT, its reason code.
fn kinds_and_reasons(packets: &[raw::Packet]) -> Vec<(u8, Option<u8>)> {
    packets
        .iter()
        .map(|p| (p.kind(), p.disconnect_reason()))
        .collect()
}
