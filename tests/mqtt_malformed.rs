//! Bad MQTT input over raw sockets: each case closes only the offending connection
//! — an MQTT 5 client is first sent DISCONNECT with the reason code MQTT 5.0 §4.13 / §2.4
//! assigns, an MQTT 3.1.1 client just has its connection closed (3.1.1 has no server
//! DISCONNECT) — while another MQTT connection, opened before, keeps publishing and receiving.
//!
//! Which reason code (MQTT 5.0):
//! - remaining length with a 5th continuation byte, ill-formed UTF-8 in a topic: the packet
//!   cannot be parsed as the spec defines it (§1.5.5, §1.5.4) → 0x81 Malformed Packet;
//! - a second CONNECT (§3.1.0-2) → 0x82 Protocol Error;
//! - a wildcard in a PUBLISH topic name (§3.3.2-2) → 0x90 Topic Name invalid;
//! - a packet larger than the Maximum Packet Size the server announced in CONNACK
//!   (§3.2.2.3.6) → 0x95 Packet too large.
//!
//! The oversized case starts warren with `mqtt_max_packet_size = 1024`; against an external
//! broker the limit is read from its MQTT 5 CONNACK (Mosquitto: `max_packet_size 1024`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use mqtt_support::raw::{self, Connect, Packet, RawClient, Version};
use mqtt_support::{text, unique_id, unique_topic, Client3, External, TestBroker};
use rumqttc::QoS;

/// A connection opened before the bad one, which must keep working after it.
struct Bystander {
    client: Client3,
    topic: String,
}

impl Bystander {
    async fn open(broker: &TestBroker) -> Bystander {
        let topic = unique_topic("bystander");
        let mut client = Client3::connect(broker.mqtt_addr(), &unique_id("bystander")).await;
        client.subscribe(&topic, QoS::AtLeastOnce).await;
        Bystander { client, topic }
    }

    async fn assert_still_works(mut self) {
        self.client
            .publish(&self.topic, QoS::AtLeastOnce, false, "undisturbed")
            .await;
        let publish = self.client.recv().await;
        assert_eq!(text(&publish.payload), "undisturbed");
        self.client.disconnect().await;
    }
}

/// `(type, reason)` of each packet, for readable assertions.
fn summary(packets: &[Packet]) -> Vec<(u8, Option<u8>)> {
    packets
        .iter()
        .map(|p| (p.kind(), p.disconnect_reason()))
        .collect()
}

/// Opens a connection (CONNECT/CONNACK done), sends `bad`, and checks what the broker sent
/// before closing: nothing for 3.1.1, exactly one DISCONNECT with `v5_reason` for 5.0.
async fn assert_rejected(
    broker: &TestBroker,
    version: Version,
    bad: &[u8],
    v5_reason: u8,
    case: &str,
) {
    let connect = Connect::new(version, &unique_id("malformed"));
    let (mut client, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    client.send(bad).await;
    let packets = client
        .try_until_closed(mqtt_support::STEP)
        .await
        .unwrap_or_else(|sent| {
            panic!(
                "{case} ({version:?}): the connection is still open after {:?}; the broker sent {:?}",
                mqtt_support::STEP,
                summary(&sent)
            )
        });
    let expected = match version {
        Version::V311 => vec![],
        Version::V5 => vec![(raw::DISCONNECT, Some(v5_reason))],
    };
    assert_eq!(
        summary(&packets),
        expected,
        "{case} ({version:?}): what the broker sent before closing the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_length_with_five_bytes_is_malformed() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let bystander = Bystander::open(&broker).await;
    // A PUBLISH whose remaining length has a continuation bit on its 4th byte.
    let bad = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x01, b'a'];
    for version in [Version::V311, Version::V5] {
        assert_rejected(
            &broker,
            version,
            &bad,
            raw::RC_MALFORMED_PACKET,
            "5-byte remaining length",
        )
        .await;
    }
    // And as the very first bytes on a connection: closed, no CONNACK.
    let mut client = RawClient::connect(broker.mqtt_addr()).await;
    client.send(&[0x10, 0x80, 0x80, 0x80, 0x80, 0x01]).await;
    let packets = client.until_closed().await;
    assert!(
        packets.iter().all(|p| p.kind() == raw::DISCONNECT),
        "no CONNACK for a malformed CONNECT: {packets:?}"
    );
    bystander.assert_still_works().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_before_connect_closes_the_connection() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let bystander = Bystander::open(&broker).await;
    let topic = unique_topic("before-connect");
    let firsts = [
        ("PINGREQ", raw::pingreq()),
        (
            "PUBLISH",
            raw::publish(Version::V311, topic.as_bytes(), 0, 0, b"x"),
        ),
        ("SUBSCRIBE", raw::subscribe(Version::V311, 1, &topic, 0)),
    ];
    for (name, first) in firsts {
        let mut client = RawClient::connect(broker.mqtt_addr()).await;
        client.send(&first).await;
        let packets = client.until_closed().await;
        // Without a CONNECT the protocol version is unknown; the server answers nothing (at most
        // a DISCONNECT) and closes (MQTT 3.1.1 §3.1.0-1, MQTT 5.0 §3.1.0-1).
        assert!(
            packets.iter().all(|p| p.kind() == raw::DISCONNECT),
            "{name} before CONNECT: the broker must not answer it, got {packets:?}"
        );
    }
    bystander.assert_still_works().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_is_a_protocol_error() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let bystander = Bystander::open(&broker).await;
    for version in [Version::V311, Version::V5] {
        let again = Connect::new(version, &unique_id("second-connect")).encode();
        assert_rejected(
            &broker,
            version,
            &again,
            raw::RC_PROTOCOL_ERROR,
            "second CONNECT",
        )
        .await;
    }
    bystander.assert_still_works().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_topic_is_malformed() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let bystander = Bystander::open(&broker).await;
    let mut topic = unique_topic("bad-utf8").into_bytes();
    topic.extend_from_slice(b"/\xC3\x28"); // an invalid 2-byte sequence
    for version in [Version::V311, Version::V5] {
        for qos in [0, 1] {
            let bad = raw::publish(version, &topic, qos, 1, b"payload");
            assert_rejected(
                &broker,
                version,
                &bad,
                raw::RC_MALFORMED_PACKET,
                &format!("ill-formed UTF-8 topic at QoS {qos}"),
            )
            .await;
        }
    }
    bystander.assert_still_works().await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_in_publish_topic_is_rejected() {
    let broker = TestBroker::options().external(External::Mqtt).start().await;
    let bystander = Bystander::open(&broker).await;
    let base = unique_topic("wildcard-publish");
    for topic in [format!("{base}/+/x"), format!("{base}/#")] {
        for version in [Version::V311, Version::V5] {
            let bad = raw::publish(version, topic.as_bytes(), 0, 0, b"payload");
            assert_rejected(
                &broker,
                version,
                &bad,
                raw::RC_TOPIC_NAME_INVALID,
                &format!("PUBLISH to {topic:?}"),
            )
            .await;
        }
    }
    bystander.assert_still_works().await;
    broker.shutdown().await;
}

/// The broker's maximum packet size, as its MQTT 5 CONNACK announces it.
async fn announced_maximum_packet_size(broker: &TestBroker) -> u32 {
    let connect = Connect::new(Version::V5, &unique_id("max-size-probe"));
    let (mut client, props) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    client.send(&raw::disconnect()).await;
    *props.numbers.get(&raw::PROP_MAXIMUM_PACKET_SIZE).expect(
        "a broker that limits packet size announces Maximum Packet Size in CONNACK \
         (MQTT 5.0 §3.2.2.3.6: absent means no limit)",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packet_is_rejected() {
    let broker = TestBroker::options()
        .external(External::Mqtt)
        .config(|config| config.mqtt_max_packet_size = 1024)
        .start()
        .await;
    let bystander = Bystander::open(&broker).await;
    let limit = announced_maximum_packet_size(&broker).await;
    if !broker.is_external() {
        assert_eq!(
            limit, 1024,
            "CONNACK Maximum Packet Size is the configured limit"
        );
    }
    let topic = unique_topic("oversized");
    let payload = vec![b'x'; limit as usize + 1000];
    for version in [Version::V311, Version::V5] {
        let bad = raw::publish(version, topic.as_bytes(), 1, 1, &payload);
        assert_rejected(
            &broker,
            version,
            &bad,
            raw::RC_PACKET_TOO_LARGE,
            "PUBLISH over the maximum packet size",
        )
        .await;
    }
    // Only the header of a huge packet is sent: the broker must not wait for 200 MB to arrive.
    for version in [Version::V311, Version::V5] {
        let mut header = vec![0x32];
        raw::put_varint(&mut header, 200_000_000);
        assert_rejected(
            &broker,
            version,
            &header,
            raw::RC_PACKET_TOO_LARGE,
            "announced 200 MB PUBLISH",
        )
        .await;
    }
    // A packet just under the limit is fine.
    let connect = Connect::new(Version::V5, &unique_id("just-fits"));
    let (mut client, _) = RawClient::handshake(broker.mqtt_addr(), &connect).await;
    let overhead = raw::publish(Version::V5, topic.as_bytes(), 1, 1, b"").len();
    let fits = raw::publish(
        Version::V5,
        topic.as_bytes(),
        1,
        1,
        &vec![b'y'; limit as usize - overhead - 2],
    );
    assert!(fits.len() <= limit as usize);
    client.send(&fits).await;
    let ack = client
        .read_packet()
        .await
        .expect("PUBACK for a packet within the limit");
    assert_eq!(ack.kind(), raw::PUBACK, "{ack:?}");
    client.send(&raw::disconnect()).await;
    bystander.assert_still_works().await;
    broker.shutdown().await;
}
