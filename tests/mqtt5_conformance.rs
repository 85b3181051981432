//! MQTT 5.0 conformance: behaviours third-party MQTT 5 client suites check, each written from
//! the OASIS MQTT Version 5.0 specification (section and normative statement cited per test)
//! with the raw client, so every packet, flag, reason code and property value the client sees
//! is asserted as it is on the wire.
//!
//! - sessions resumed with Clean Start 0 keep what was queued while the client was away,
//!   whatever Session Expiry Interval the new CONNECT carries;
//! - Message Expiry Interval: expired messages are dropped, never delivered late, and
//!   deliveries carry the remaining interval;
//! - subscription options: Retain Handling, Retain As Published, No Local;
//! - topic aliases from the client, and their errors (0x94);
//! - Receive Maximum counting QoS 1 and QoS 2 (0x93).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_support::raw::{self, Connect, Packet, Properties, RawClient, Version};
use mqtt_support::{unique_id, unique_topic, External, TestBroker};

/// Topic Alias invalid (MQTT 5.0 §2.4, Table 2-6).
const RC_TOPIC_ALIAS_INVALID: u8 = 0x94;

/// How long a test waits to be sure the broker sends nothing more.
const QUIET: Duration = Duration::from_millis(400);

/// Subscription option bits (MQTT 5.0 §3.8.3.1).
const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
fn retain_handling(value: u8) -> u8 {
    value << 4
}

/// A PUBLISH as the client received it.
#[derive(Debug)]
struct Received {
    topic: String,
    qos: u8,
    retain: bool,
    packet_id: u16,
    properties: Properties,
    payload: String,
}

impl Received {
    fn message_expiry(&self) -> Option<u32> {
        self.properties
            .numbers
            .get(&raw::PROP_MESSAGE_EXPIRY)
            .copied()
    }
}

/// An MQTT 5 client over the raw socket.
struct Client5 {
    raw: RawClient,
    /// CONNACK Session Present.
    session_present: bool,
    /// CONNACK properties.
    connack: Properties,
    next_packet_id: u16,
}

impl Client5 {
    /// Connects with `properties` (encoded CONNECT properties) and expects CONNACK 0x00.
    async fn connect(addr: SocketAddr, client_id: &str, clean: bool, properties: Vec<u8>) -> Self {
        let mut connect = Connect::new(Version::V5, client_id);
        connect.clean = clean;
        connect.properties = properties;
        let mut raw = RawClient::connect(addr).await;
        raw.send(&connect.encode()).await;
        let packet = raw.read_packet().await.expect("CONNACK");
        let (session_present, code, connack) = packet
            .connack(Version::V5)
            .unwrap_or_else(|| panic!("expected CONNACK, got {packet:?}"));
        assert_eq!(code, 0, "CONNACK reason code for {client_id}");
        Client5 {
            raw,
            session_present,
            connack,
            next_packet_id: 1,
        }
    }

    /// Connects with a Clean Start flag and a Session Expiry Interval.
    async fn with_session(addr: SocketAddr, client_id: &str, clean: bool, expiry: u32) -> Self {
        Client5::connect(addr, client_id, clean, session_expiry(expiry)).await
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        id
    }

    /// Subscribes to one filter with an options byte (QoS in the low bits) and expects a
    /// SUBACK granting the requested QoS.
    async fn subscribe(&mut self, filter: &str, options: u8) {
        let packet_id = self.packet_id();
        let mut body = packet_id.to_be_bytes().to_vec();
        body.push(0); // no properties
        raw::put_bytes(&mut body, filter.as_bytes());
        body.push(options);
        self.raw
            .send(&raw::packet((raw::SUBSCRIBE << 4) | 0x02, &body))
            .await;
        let suback = self.next("SUBACK").await;
        assert_eq!(
            suback.kind(),
            raw::SUBACK,
            "expected SUBACK, got {suback:?}"
        );
        let reason = suback.body.last().copied();
        assert_eq!(reason, Some(options & 0x03), "SUBACK reason for {filter}");
    }

    /// Publishes and, for QoS 1, waits for the PUBACK (QoS 2 is not used here).
    async fn publish(&mut self, topic: &str, qos: u8, retain: bool, props: &[u8], payload: &str) {
        let packet_id = if qos > 0 { self.packet_id() } else { 0 };
        let mut bytes = raw::publish_with_properties(
            Version::V5,
            topic.as_bytes(),
            qos,
            packet_id,
            props,
            payload.as_bytes(),
        );
        if retain {
            bytes[0] |= 0x01;
        }
        self.raw.send(&bytes).await;
        if qos == 1 {
            let ack = self.next("PUBACK").await;
            assert_eq!(ack.kind(), raw::PUBACK, "expected PUBACK, got {ack:?}");
        }
    }

    async fn next(&mut self, what: &str) -> Packet {
        self.raw
            .read_packet()
            .await
            .unwrap_or_else(|| panic!("the broker closed the connection instead of sending {what}"))
    }

    /// The next packet, which must be a PUBLISH; not acknowledged.
    async fn receive(&mut self) -> Received {
        let packet = self.next("PUBLISH").await;
        let (topic, packet_id, properties, payload) = packet
            .publish(Version::V5)
            .unwrap_or_else(|| panic!("expected PUBLISH, got {packet:?}"));
        Received {
            topic: String::from_utf8(topic).expect("UTF-8 topic"),
            qos: (packet.first_byte >> 1) & 0x03,
            retain: packet.first_byte & 0x01 != 0,
            packet_id,
            properties,
            payload: String::from_utf8(payload).expect("UTF-8 payload"),
        }
    }

    /// The next PUBLISH, acknowledged if it is QoS 1.
    async fn receive_and_ack(&mut self) -> Received {
        let received = self.receive().await;
        if received.qos == 1 {
            self.puback(received.packet_id).await;
        }
        received
    }

    async fn puback(&mut self, packet_id: u16) {
        self.raw
            .send(&raw::packet(raw::PUBACK << 4, &packet_id.to_be_bytes()))
            .await;
    }

    /// Asserts the broker sends nothing for a short while (and keeps the connection open).
    async fn assert_quiet(&mut self, context: &str) {
        match self.raw.try_until_closed(QUIET).await {
            Err(packets) if packets.is_empty() => {}
            Err(packets) => panic!("{context}: unexpected packets {packets:?}"),
            Ok(packets) => panic!("{context}: the broker closed the connection after {packets:?}"),
        }
    }

    /// Reads until the broker closes; returns the DISCONNECT reason code it sent last.
    async fn disconnect_reason(&mut self) -> Option<u8> {
        let packets = self.raw.until_closed().await;
        packets.last().and_then(Packet::disconnect_reason)
    }

    /// A normal DISCONNECT, then waits for the broker to close the socket.
    async fn disconnect(mut self) {
        self.raw.send(&raw::disconnect()).await;
        let _ = self.raw.until_closed().await;
    }
}

/// Encoded Session Expiry Interval property.
fn session_expiry(seconds: u32) -> Vec<u8> {
    let mut props = vec![raw::PROP_SESSION_EXPIRY];
    props.extend_from_slice(&seconds.to_be_bytes());
    props
}

/// Encoded Message Expiry Interval property.
fn message_expiry(seconds: u32) -> Vec<u8> {
    let mut props = vec![raw::PROP_MESSAGE_EXPIRY];
    props.extend_from_slice(&seconds.to_be_bytes());
    props
}

/// Encoded Topic Alias property.
fn topic_alias(alias: u16) -> Vec<u8> {
    let mut props = vec![raw::PROP_TOPIC_ALIAS];
    props.extend_from_slice(&alias.to_be_bytes());
    props
}

/// Ends a persistent session a test left behind (Clean Start 1, expiry 0).
async fn end_session(addr: SocketAddr, client_id: &str) {
    Client5::with_session(addr, client_id, true, 0)
        .await
        .disconnect()
        .await;
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// MQTT 5.0 §3.1.2.4 [MQTT-3.1.2-5]: with Clean Start 0 and an existing Session the Server
/// MUST resume communications based on the existing Session's state, which includes the
/// QoS 1 and QoS 2 messages pending transmission (§4.1). §3.1.2.11.2: the Session Expiry
/// Interval of the new CONNECT governs from then on — it does not decide whether the state
/// the previous connection left is kept. So a client that reconnects with Session Expiry
/// Interval 0 gets what was queued while it was away, and its session ends when this
/// connection closes (the next Clean Start 0 CONNECT finds no session, and subscribing again
/// does not bring back what was published while there was no subscription).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_session_expiry_zero_delivers_messages_queued_while_away() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("resume-expiry-0");
    let client_id = unique_id("resume-expiry-0");

    let mut subscriber = Client5::with_session(addr, &client_id, true, 300).await;
    subscriber.subscribe(&topic, 1).await;
    subscriber.disconnect().await;

    let mut publisher = Client5::connect(addr, &unique_id("resume-pub"), true, vec![]).await;
    publisher.publish(&topic, 1, false, &[], "while-away").await;

    let mut resumed = Client5::with_session(addr, &client_id, false, 0).await;
    assert!(
        resumed.session_present,
        "the session with expiry 300 s is resumed"
    );
    let queued = resumed.receive_and_ack().await;
    assert_eq!(
        (queued.topic.as_str(), queued.payload.as_str()),
        (topic.as_str(), "while-away")
    );
    // The resumed subscription still delivers.
    publisher.publish(&topic, 1, false, &[], "live").await;
    assert_eq!(resumed.receive_and_ack().await.payload, "live");
    resumed.disconnect().await;

    // Expiry 0 governed that connection: the session ended with it.
    publisher
        .publish(&topic, 1, false, &[], "after-the-end")
        .await;
    let mut again = Client5::with_session(addr, &client_id, false, 300).await;
    assert!(
        !again.session_present,
        "the session ended when the expiry-0 connection closed"
    );
    // A message published before this subscription existed must not arrive through it.
    again.subscribe(&topic, 1).await;
    again
        .assert_quiet("nothing of the ended session survives")
        .await;
    again.disconnect().await;
    end_session(addr, &client_id).await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// MQTT 5.0 §3.14.2.2.2: the Session Expiry Interval sent on DISCONNECT replaces the one from
/// CONNECT; 0 means the Session ends when the Network Connection closes (§3.1.2.11.2). Messages
/// published afterwards reach nobody: a later CONNECT finds no session, and subscribing to the
/// same topic again does not bring back what was published while there was no subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_with_session_expiry_zero_ends_the_session() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("disconnect-expiry-0");
    let client_id = unique_id("disconnect-expiry-0");

    let mut subscriber = Client5::with_session(addr, &client_id, true, 300).await;
    subscriber.subscribe(&topic, 1).await;
    // DISCONNECT, reason 0x00, Session Expiry Interval 0.
    let mut body = vec![0x00];
    body.extend_from_slice(&raw::properties(&session_expiry(0)));
    subscriber
        .raw
        .send(&raw::packet(raw::DISCONNECT << 4, &body))
        .await;
    let _ = subscriber.raw.until_closed().await;

    let mut publisher = Client5::connect(addr, &unique_id("disconnect-pub"), true, vec![]).await;
    publisher
        .publish(&topic, 1, false, &[], "after-the-end")
        .await;

    let mut again = Client5::with_session(addr, &client_id, false, 300).await;
    assert!(
        !again.session_present,
        "DISCONNECT with expiry 0 ended the session"
    );
    // A message published before this subscription existed must not arrive through it.
    again.subscribe(&topic, 1).await;
    again
        .assert_quiet("nothing of the ended session survives")
        .await;
    again.disconnect().await;
    end_session(addr, &client_id).await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Message Expiry Interval
// ---------------------------------------------------------------------------------------------

/// MQTT 5.0 §3.3.2.3.3: if the Message Expiry Interval has passed and the Server has not
/// started onward delivery to a subscriber, it MUST delete that subscriber's copy
/// [MQTT-3.3.2-5]; the PUBLISH to a client carries the received value minus the time the
/// message waited in the Server [MQTT-3.3.2-6]; a message without the property does not
/// expire and is sent without it. Offline session: queued in order, the expired message in the
/// middle is dropped, the others arrive, the long-lived one with the interval it has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_dropped_for_an_offline_session() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("expiry-offline");
    let client_id = unique_id("expiry-offline");

    let mut subscriber = Client5::with_session(addr, &client_id, true, 300).await;
    subscriber.subscribe(&topic, 1).await;
    subscriber.disconnect().await;

    let mut publisher = Client5::connect(addr, &unique_id("expiry-pub"), true, vec![]).await;
    publisher.publish(&topic, 1, false, &[], "no-expiry").await;
    publisher
        .publish(&topic, 1, false, &message_expiry(1), "expires")
        .await;
    publisher
        .publish(&topic, 1, false, &message_expiry(30), "lasts")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut resumed = Client5::with_session(addr, &client_id, false, 300).await;
    assert!(resumed.session_present);
    let first = resumed.receive_and_ack().await;
    assert_eq!(first.payload, "no-expiry");
    assert_eq!(first.message_expiry(), None, "no expiry was set on it");
    let second = resumed.receive_and_ack().await;
    assert_eq!(
        second.payload, "lasts",
        "the expired message is never delivered"
    );
    let left = second
        .message_expiry()
        .expect("Message Expiry Interval on delivery");
    assert!(
        (27..=29).contains(&left),
        "30 s minus the 1.5 s it waited, in whole seconds (got {left})"
    );
    resumed.assert_quiet("nothing else was queued").await;
    resumed.disconnect().await;
    end_session(addr, &client_id).await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// MQTT 5.0 §3.3.2.3.3 [MQTT-3.3.2-5], [MQTT-3.3.2-6] for a connected but slow client: with
/// Receive Maximum 1 (§3.1.2.11.3) and its one QoS 1 delivery unacknowledged, the Server
/// cannot start delivering the next messages; one that expires meanwhile is dropped, the next
/// arrives after the PUBACK with the interval it has left. A message delivered at once carries
/// its full interval (nothing waited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_dropped_for_a_slow_client() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("expiry-slow");
    let mut receive_maximum_1 = vec![raw::PROP_RECEIVE_MAXIMUM];
    receive_maximum_1.extend_from_slice(&1u16.to_be_bytes());
    let mut subscriber =
        Client5::connect(addr, &unique_id("expiry-slow"), true, receive_maximum_1).await;
    subscriber.subscribe(&topic, 1).await;

    let mut publisher = Client5::connect(addr, &unique_id("expiry-slow-pub"), true, vec![]).await;
    publisher
        .publish(&topic, 1, false, &message_expiry(30), "held")
        .await;
    let held = subscriber.receive().await;
    assert_eq!(held.payload, "held");
    let full = held
        .message_expiry()
        .expect("Message Expiry Interval on delivery");
    assert!(
        (29..=30).contains(&full),
        "delivered at once: 30 s left (got {full})"
    );

    publisher
        .publish(&topic, 1, false, &message_expiry(1), "expires")
        .await;
    publisher
        .publish(&topic, 1, false, &message_expiry(30), "lasts")
        .await;
    subscriber
        .assert_quiet("Receive Maximum 1 with one delivery in flight")
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    subscriber.puback(held.packet_id).await;

    let next = subscriber.receive_and_ack().await;
    assert_eq!(
        next.payload, "lasts",
        "the expired message is never delivered"
    );
    let left = next
        .message_expiry()
        .expect("Message Expiry Interval on delivery");
    assert!(
        (27..=29).contains(&left),
        "30 s minus the ~1.6 s it waited, in whole seconds (got {left})"
    );
    subscriber.assert_quiet("nothing else was queued").await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// MQTT 5.0 §3.3.2.3.3 for retained messages: a retained message whose Message Expiry
/// Interval has passed is not sent to a new subscriber; a live one is sent with the interval
/// it has left [MQTT-3.3.2-6] (§3.3.1.3: messages sent because of a subscription carry RETAIN 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_retained_messages_are_not_sent_on_subscribe() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let base = unique_topic("expiry-retained");
    let mut publisher = Client5::connect(addr, &unique_id("expiry-ret-pub"), true, vec![]).await;
    publisher
        .publish(
            &format!("{base}/short"),
            1,
            true,
            &message_expiry(1),
            "short",
        )
        .await;
    publisher
        .publish(
            &format!("{base}/long"),
            1,
            true,
            &message_expiry(30),
            "long",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut subscriber = Client5::connect(addr, &unique_id("expiry-ret-sub"), true, vec![]).await;
    subscriber.subscribe(&format!("{base}/#"), 1).await;
    let retained = subscriber.receive_and_ack().await;
    assert_eq!(retained.payload, "long");
    assert!(retained.retain);
    let left = retained.message_expiry().expect("Message Expiry Interval");
    assert!((27..=29).contains(&left), "30 s minus 1.5 s (got {left})");
    subscriber
        .assert_quiet("the expired retained message is not sent")
        .await;
    for topic in ["short", "long"] {
        publisher
            .publish(&format!("{base}/{topic}"), 1, true, &[], "")
            .await;
    }
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Subscription options
// ---------------------------------------------------------------------------------------------

/// MQTT 5.0 §3.8.3.1 Retain Handling: 0 = send retained messages at every subscribe;
/// 1 = only if the subscription did not exist [MQTT-3.3.1-10]; 2 = never at subscribe
/// [MQTT-3.3.1-11]. Messages sent because of a new subscription carry RETAIN 1
/// [MQTT-3.3.1-9] (with Retain As Published 0 too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_handling_0_1_2() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("retain-handling");
    let mut publisher = Client5::connect(addr, &unique_id("rh-pub"), true, vec![]).await;
    publisher.publish(&topic, 1, true, &[], "retained").await;

    let mut subscriber = Client5::connect(addr, &unique_id("rh-sub"), true, vec![]).await;
    for attempt in ["new", "existing"] {
        subscriber.subscribe(&topic, 1 | retain_handling(0)).await;
        let sent = subscriber.receive_and_ack().await;
        assert_eq!(sent.payload, "retained", "RH 0, {attempt} subscription");
        assert!(
            sent.retain,
            "RH 0: RETAIN 1 on a message sent because of a subscribe"
        );
    }
    subscriber.disconnect().await;

    let mut subscriber = Client5::connect(addr, &unique_id("rh-sub1"), true, vec![]).await;
    subscriber.subscribe(&topic, 1 | retain_handling(1)).await;
    let sent = subscriber.receive_and_ack().await;
    assert_eq!(sent.payload, "retained", "RH 1, new subscription");
    assert!(sent.retain);
    subscriber.subscribe(&topic, 1 | retain_handling(1)).await;
    subscriber
        .assert_quiet("RH 1, subscription already existed")
        .await;
    subscriber.disconnect().await;

    let mut subscriber = Client5::connect(addr, &unique_id("rh-sub2"), true, vec![]).await;
    subscriber.subscribe(&topic, 1 | retain_handling(2)).await;
    subscriber.assert_quiet("RH 2, new subscription").await;
    // The subscription itself works.
    publisher.publish(&topic, 1, false, &[], "live").await;
    let live = subscriber.receive_and_ack().await;
    assert_eq!(live.payload, "live");
    assert!(!live.retain);
    subscriber.disconnect().await;

    publisher.publish(&topic, 1, true, &[], "").await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// MQTT 5.0 §3.3.1.3 and §3.8.3.1 Retain As Published: with 0 the Server MUST set RETAIN 0 on
/// forwarded messages [MQTT-3.3.1-12]; with 1 it MUST keep the RETAIN flag the message was
/// published with [MQTT-3.3.1-13]. MQTT 3.1.1 subscribers always get RETAIN 0 on forwarded
/// messages (MQTT 3.1.1 [MQTT-3.3.1-9]), unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_as_published_controls_the_retain_flag_of_forwarded_messages() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("retain-as-published");
    let mut cleared = Client5::connect(addr, &unique_id("rap0"), true, vec![]).await;
    cleared.subscribe(&topic, 1 | retain_handling(2)).await;
    let mut kept = Client5::connect(addr, &unique_id("rap1"), true, vec![]).await;
    kept.subscribe(&topic, 1 | RETAIN_AS_PUBLISHED | retain_handling(2))
        .await;
    let (mut v311, _) =
        RawClient::handshake(addr, &Connect::new(Version::V311, &unique_id("rap-v3"))).await;
    v311.send(&raw::subscribe(Version::V311, 1, &topic, 1))
        .await;
    let suback = v311.read_packet().await.expect("SUBACK");
    assert_eq!(suback.kind(), raw::SUBACK);

    let mut publisher = Client5::connect(addr, &unique_id("rap-pub"), true, vec![]).await;
    publisher
        .publish(&topic, 1, true, &[], "published-retained")
        .await;
    publisher
        .publish(&topic, 1, false, &[], "published-plain")
        .await;

    for (client, name, expected) in [
        (&mut cleared, "RAP 0", [false, false]),
        (&mut kept, "RAP 1", [true, false]),
    ] {
        let first = client.receive_and_ack().await;
        assert_eq!(first.payload, "published-retained");
        assert_eq!(
            first.retain, expected[0],
            "{name}: RETAIN of the retained publish"
        );
        let second = client.receive_and_ack().await;
        assert_eq!(second.payload, "published-plain");
        assert_eq!(
            second.retain, expected[1],
            "{name}: RETAIN of the plain publish"
        );
    }
    for payload in ["published-retained", "published-plain"] {
        let packet = v311.read_packet().await.expect("PUBLISH");
        let (_, packet_id, _, body) = packet.publish(Version::V311).expect("PUBLISH");
        assert_eq!(body, payload.as_bytes());
        assert_eq!(
            packet.first_byte & 0x01,
            0,
            "MQTT 3.1.1: RETAIN 0 on {payload}"
        );
        v311.send(&raw::packet(raw::PUBACK << 4, &packet_id.to_be_bytes()))
            .await;
    }
    publisher.publish(&topic, 1, true, &[], "").await;
    for client in [cleared, kept, publisher] {
        client.disconnect().await;
    }
    v311.send(&raw::disconnect()).await;
    broker.shutdown().await;
}

/// MQTT 5.0 §3.8.3.1 No Local [MQTT-3.8.3-3] together with Retain As Published: the client's
/// own messages are not sent back to it, retained or not, while another client's retained
/// publish arrives with RETAIN 1 [MQTT-3.3.1-13]; a second subscription of the same client
/// without No Local does get its own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_with_retain_as_published() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let base = unique_topic("no-local");
    let mut client = Client5::connect(addr, &unique_id("no-local"), true, vec![]).await;
    client
        .subscribe(&format!("{base}/a"), 1 | NO_LOCAL | RETAIN_AS_PUBLISHED)
        .await;
    client
        .publish(&format!("{base}/a"), 1, true, &[], "own-retained")
        .await;
    client
        .publish(&format!("{base}/a"), 1, false, &[], "own-plain")
        .await;
    client
        .assert_quiet("No Local: own messages are not sent back")
        .await;

    let mut other = Client5::connect(addr, &unique_id("no-local-other"), true, vec![]).await;
    other
        .publish(&format!("{base}/a"), 1, true, &[], "other-retained")
        .await;
    let received = client.receive_and_ack().await;
    assert_eq!(received.payload, "other-retained");
    assert!(received.retain, "Retain As Published keeps RETAIN 1");

    client
        .subscribe(&format!("{base}/b"), 1 | RETAIN_AS_PUBLISHED)
        .await;
    client
        .publish(&format!("{base}/b"), 1, true, &[], "own-on-b")
        .await;
    let own = client.receive_and_ack().await;
    assert_eq!(
        own.payload, "own-on-b",
        "without No Local, own messages come back"
    );
    assert!(own.retain);

    for topic in ["a", "b"] {
        other
            .publish(&format!("{base}/{topic}"), 1, true, &[], "")
            .await;
    }
    client.disconnect().await;
    other.disconnect().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Topic aliases
// ---------------------------------------------------------------------------------------------

/// MQTT 5.0 §3.3.2.3.4: a PUBLISH with a Topic Name and a Topic Alias sets the mapping; one
/// with the alias and a zero-length Topic Name uses it; a new Topic Name re-points the alias.
/// The subscriber always sees the full topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_sets_and_uses_the_mapping() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let base = unique_topic("alias");
    let mut subscriber = Client5::connect(addr, &unique_id("alias-sub"), true, vec![]).await;
    subscriber.subscribe(&format!("{base}/#"), 1).await;
    let mut publisher = Client5::connect(addr, &unique_id("alias-pub"), true, vec![]).await;
    let maximum = publisher
        .connack
        .numbers
        .get(&raw::PROP_TOPIC_ALIAS_MAXIMUM)
        .copied();
    assert!(
        maximum.is_some_and(|m| m >= 1),
        "Topic Alias Maximum in CONNACK: {maximum:?}"
    );

    let (a, b) = (format!("{base}/a"), format!("{base}/b"));
    publisher
        .publish(&a, 1, false, &topic_alias(1), "set")
        .await;
    publisher
        .publish("", 1, false, &topic_alias(1), "use")
        .await;
    publisher
        .publish(&b, 1, false, &topic_alias(1), "re-point")
        .await;
    publisher
        .publish("", 1, false, &topic_alias(1), "use-again")
        .await;
    for (topic, payload) in [
        (&a, "set"),
        (&a, "use"),
        (&b, "re-point"),
        (&b, "use-again"),
    ] {
        let received = subscriber.receive_and_ack().await;
        assert_eq!(
            (&received.topic, received.payload.as_str()),
            (topic, payload)
        );
    }
    subscriber.disconnect().await;
    publisher.disconnect().await;
    broker.shutdown().await;
}

/// MQTT 5.0 §3.3.2.3.4: a Topic Alias of 0 [MQTT-3.3.2-8] or above the Topic Alias Maximum
/// the Server announced in CONNACK [MQTT-3.3.2-10] is invalid; so is a zero-length Topic Name
/// with an alias that has no mapping — mappings do not carry over from an earlier connection
/// [MQTT-3.3.2-7]. Each closes the connection with DISCONNECT 0x94 (Topic Alias invalid,
/// §3.14.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topic_aliases_close_with_0x94() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("alias-invalid");
    let client_id = unique_id("alias-invalid");
    let maximum = {
        let mut probe = Client5::connect(addr, &client_id, true, vec![]).await;
        // A mapping on this connection, which the later connections must not inherit.
        probe
            .publish(&topic, 1, false, &topic_alias(1), "mapped")
            .await;
        let maximum = probe
            .connack
            .numbers
            .get(&raw::PROP_TOPIC_ALIAS_MAXIMUM)
            .copied();
        probe.disconnect().await;
        u16::try_from(maximum.expect("Topic Alias Maximum in CONNACK")).expect("u16")
    };
    let cases: [(&str, &str, u16); 4] = [
        ("alias 0", topic.as_str(), 0),
        ("alias above the maximum", topic.as_str(), maximum + 1),
        ("unknown alias, empty topic", "", 2),
        ("alias from an earlier connection", "", 1),
    ];
    for (case, topic, alias) in cases {
        let mut client = Client5::connect(addr, &client_id, true, vec![]).await;
        let bytes = raw::publish_with_properties(
            Version::V5,
            topic.as_bytes(),
            1,
            1,
            &topic_alias(alias),
            b"x",
        );
        client.raw.send(&bytes).await;
        assert_eq!(
            client.disconnect_reason().await,
            Some(RC_TOPIC_ALIAS_INVALID),
            "{case}: DISCONNECT 0x94"
        );
    }
    mqtt_support::assert_broker_works(addr).await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Receive Maximum
// ---------------------------------------------------------------------------------------------

/// MQTT 5.0 §3.3.4 [MQTT-3.3.4-7] and §4.9: Receive Maximum bounds the QoS 1 and QoS 2
/// PUBLISHes a client has unacknowledged, together; the Server answers a client exceeding it
/// with DISCONNECT 0x93 (Receive Maximum exceeded). Here the client holds Receive Maximum − 1
/// QoS 2 exchanges open (PUBREC received, no PUBREL) and sends two QoS 1 PUBLISHes at once:
/// the second is one too many, since the first's PUBACK cannot have reached it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_publishes_count_towards_receive_maximum() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("receive-max-qos1");
    let mut client = Client5::connect(addr, &unique_id("receive-max-qos1"), true, vec![]).await;
    let receive_maximum = client
        .connack
        .numbers
        .get(&raw::PROP_RECEIVE_MAXIMUM)
        .copied()
        .unwrap_or(65_535);
    let receive_maximum = u16::try_from(receive_maximum).expect("u16");
    assert!(
        receive_maximum <= 4096,
        "a test-sized Receive Maximum ({receive_maximum})"
    );
    let mut burst = Vec::new();
    for packet_id in 1..receive_maximum {
        burst.extend(raw::publish(
            Version::V5,
            topic.as_bytes(),
            2,
            packet_id,
            b"q2",
        ));
    }
    client.raw.send(&burst).await;
    for _ in 1..receive_maximum {
        let pubrec = client.next("PUBREC").await;
        assert_eq!(pubrec.kind(), raw::PUBREC, "{pubrec:?}");
    }
    let mut two = raw::publish(Version::V5, topic.as_bytes(), 1, receive_maximum, b"q1-a");
    two.extend(raw::publish(
        Version::V5,
        topic.as_bytes(),
        1,
        receive_maximum.wrapping_add(1).max(1),
        b"q1-b",
    ));
    client.raw.send(&two).await;
    let packets = client.raw.until_closed().await;
    let last = packets.last().and_then(Packet::disconnect_reason);
    assert_eq!(
        last,
        Some(raw::RC_RECEIVE_MAXIMUM_EXCEEDED),
        "Receive Maximum {receive_maximum} exceeded by the second QoS 1 PUBLISH: {packets:?}"
    );
    mqtt_support::assert_broker_works(addr).await;
    broker.shutdown().await;
}

/// MQTT 5.0 §4.9: a client that stays within Receive Maximum with QoS 1 — here exactly
/// Receive Maximum QoS 1 PUBLISHes sent at once — gets every PUBACK and stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_publishes_within_receive_maximum_are_accepted() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let addr = broker.mqtt_addr();
    let topic = unique_topic("receive-max-qos1-ok");
    let mut client = Client5::connect(addr, &unique_id("receive-max-qos1-ok"), true, vec![]).await;
    let receive_maximum = client
        .connack
        .numbers
        .get(&raw::PROP_RECEIVE_MAXIMUM)
        .copied()
        .unwrap_or(65_535)
        .min(4096);
    let receive_maximum = u16::try_from(receive_maximum).expect("u16");
    for round in 0..2 {
        let mut burst = Vec::new();
        for packet_id in 1..=receive_maximum {
            burst.extend(raw::publish(
                Version::V5,
                topic.as_bytes(),
                1,
                packet_id,
                b"x",
            ));
        }
        client.raw.send(&burst).await;
        for _ in 0..receive_maximum {
            let ack = client.next("PUBACK").await;
            assert_eq!(ack.kind(), raw::PUBACK, "round {round}: {ack:?}");
        }
    }
    client.raw.send(&raw::pingreq()).await;
    assert_eq!(client.next("PINGRESP").await.kind(), raw::PINGRESP);
    client.disconnect().await;
    broker.shutdown().await;
}

/// [MQTT-3.1.4] lets a client send packets right behind CONNECT: a CONNECT and a SUBSCRIBE in
/// one TCP segment get their CONNACK and SUBACK (the SUBSCRIBE is not left unread in the
/// handshake's buffer), with keep-alive 0 so no later ping could unstick it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_sent_with_connect_is_answered() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    for version in [Version::V311, Version::V5] {
        let mut connect = Connect::new(version, &unique_id("pipelined"));
        connect.keep_alive = 0;
        let mut bytes = connect.encode();
        bytes.extend(raw::subscribe(version, 1, &unique_topic("pipelined"), 1));
        let mut client = RawClient::connect(broker.mqtt_addr()).await;
        client.send(&bytes).await;
        let kinds: Vec<u8> = [client.read_packet().await, client.read_packet().await]
            .iter()
            .map(|packet| packet.as_ref().map_or(0, |p| p.kind()))
            .collect();
        assert_eq!(kinds, vec![raw::CONNACK, raw::SUBACK], "{version:?}");
    }
    broker.shutdown().await;
}

/// Messages a subscription drops without sending (No Local, MQTT 5.0 §3.8.3.1) still give
/// their delivery window back: after more of its own messages than the window holds, the
/// subscriber still receives another client's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_drops_do_not_starve_the_subscription() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let topic = unique_topic("nolocal-window");
    let mut connect = Connect::new(Version::V5, &unique_id("nolocal-window"));
    connect.keep_alive = 0;
    let (mut subscriber, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    // Options: QoS 0, No Local.
    subscriber
        .send(&raw::subscribe(Version::V5, 1, &topic, 0x04))
        .await;
    let suback = subscriber.read_packet().await.expect("SUBACK");
    assert_eq!(suback.kind(), raw::SUBACK);
    let mut own = Vec::new();
    for _ in 0..3000 {
        own.extend(raw::publish(Version::V5, topic.as_bytes(), 0, 0, b"mine"));
    }
    subscriber.send(&own).await;
    // A ping round trip: everything before it was read and routed.
    subscriber.send(&raw::pingreq()).await;
    let pong = subscriber.read_packet().await.expect("PINGRESP");
    assert_eq!(pong.kind(), raw::PINGRESP, "own messages are not delivered");

    let other = Connect::new(Version::V5, &unique_id("nolocal-other"));
    let (mut publisher, _) = RawClient::handshake(broker.mqtt_addr(), &other).await;
    publisher
        .send(&raw::publish(
            Version::V5,
            topic.as_bytes(),
            0,
            0,
            b"theirs",
        ))
        .await;
    let delivered = subscriber
        .read_packet()
        .await
        .expect("another client's message reaches the no-local subscriber");
    let (_, _, _, payload) = delivered.publish(Version::V5).expect("a PUBLISH");
    assert_eq!(payload, b"theirs");
    broker.shutdown().await;
}
