//! Golden bytes: packets captured from paho-mqtt 2.2.0 (Python) against a recording
//! server, and server packets written out from the specs' figures. Each decodes to the
//! expected model and encodes back to the same bytes.

use bytes::Bytes;

use super::*;
use crate::reason;
use crate::*;

fn user(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn paho_connect(protocol: ProtocolVersion) -> Connect {
    let v5 = protocol == ProtocolVersion::V5;
    Connect {
        protocol,
        client_id: "paho-golden".into(),
        clean_start: true,
        keep_alive: 60,
        username: Some("guest".into()),
        password: Some(Bytes::from_static(b"guest")),
        will: Some(Will {
            topic: "clients/paho-golden/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PublishProperties::default(),
            delay_interval: v5.then_some(10),
        }),
        properties: if v5 {
            ConnectProperties {
                session_expiry_interval: Some(3600),
                receive_maximum: Some(20),
                ..Default::default()
            }
        } else {
            ConnectProperties::default()
        },
    }
}

#[test]
fn paho_connect_v311() {
    let bytes = hex(PAHO_CONNECT_V311);
    let mut codec = Codec::new(MAX);
    assert_eq!(codec.version(), None);
    let p = decode_one(&mut codec, &bytes).unwrap();
    assert_eq!(p, Packet::Connect(paho_connect(ProtocolVersion::V311)));
    assert_eq!(codec.version(), Some(ProtocolVersion::V311));
    assert_eq!(encode(ProtocolVersion::V311, &p), bytes);
}

#[test]
fn paho_connect_v5() {
    let bytes = hex(PAHO_CONNECT_V5);
    let mut codec = Codec::new(MAX);
    let p = decode_one(&mut codec, &bytes).unwrap();
    assert_eq!(p, Packet::Connect(paho_connect(ProtocolVersion::V5)));
    assert_eq!(codec.version(), Some(ProtocolVersion::V5));
    assert_eq!(encode(ProtocolVersion::V5, &p), bytes);
}

fn paho_subscribe(v5: bool) -> Subscribe {
    Subscribe {
        packet_id: 1,
        filters: vec![
            SubscribeFilter {
                filter: "sensors/+/temp".into(),
                qos: QoS::AtLeastOnce,
                no_local: v5,
                retain_as_published: v5,
                retain_handling: u8::from(v5),
            },
            SubscribeFilter {
                filter: "cmd/#".into(),
                qos: QoS::ExactlyOnce,
                ..Default::default()
            },
        ],
        subscription_identifier: v5.then_some(7),
        user_properties: vec![],
    }
}

#[test]
fn paho_subscribe_v311() {
    let bytes = hex("821b0001000e73656e736f72732f2b2f74656d70010005636d642f2302");
    let p = decode_after_connect(ProtocolVersion::V311, &bytes).unwrap();
    assert_eq!(p, Packet::Subscribe(paho_subscribe(false)));
    assert_eq!(encode(ProtocolVersion::V311, &p), bytes);
}

#[test]
fn paho_subscribe_v5_with_options() {
    // Options 0x1d: QoS 1, No Local, Retain As Published, Retain Handling 1;
    // Subscription Identifier 7.
    let bytes = hex("821e0001020b07000e73656e736f72732f2b2f74656d701d0005636d642f2302");
    let p = decode_after_connect(ProtocolVersion::V5, &bytes).unwrap();
    assert_eq!(p, Packet::Subscribe(paho_subscribe(true)));
    assert_eq!(encode(ProtocolVersion::V5, &p), bytes);
}

fn paho_publish(qos: QoS, packet_id: u16, retain: bool, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: "sensors/kitchen/temp".into(),
        packet_id,
        payload: Bytes::from_static(payload),
        properties: PublishProperties::default(),
    }
}

fn paho_v5_props() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/paho".into()),
        correlation_data: Some(Bytes::from_static(&[1, 2])),
        user_properties: vec![user("k", "v")],
        ..Default::default()
    }
}

#[test]
fn paho_publish_v311_qos_0_1_2() {
    let cases = [
        (
            "301a001473656e736f72732f6b69746368656e2f74656d7032312e35",
            paho_publish(QoS::AtMostOnce, 0, false, b"21.5"),
        ),
        (
            "321c001473656e736f72732f6b69746368656e2f74656d70000332322e30",
            paho_publish(QoS::AtLeastOnce, 3, false, b"22.0"),
        ),
        (
            "351c001473656e736f72732f6b69746368656e2f74656d70000432322e35",
            paho_publish(QoS::ExactlyOnce, 4, true, b"22.5"),
        ),
    ];
    for (h, expected) in cases {
        let bytes = hex(h);
        let p = decode_after_connect(ProtocolVersion::V311, &bytes).unwrap();
        assert_eq!(p, Packet::Publish(expected));
        assert_eq!(encode(ProtocolVersion::V311, &p), bytes);
    }
}

#[test]
fn paho_publish_v5_qos_0_1_2_with_properties() {
    let mut q1 = paho_publish(QoS::AtLeastOnce, 3, false, b"22.0");
    q1.properties = paho_v5_props();
    let mut q2 = paho_publish(QoS::ExactlyOnce, 4, true, b"22.5");
    q2.properties = paho_v5_props();
    let cases = [
        (
            "301b001473656e736f72732f6b69746368656e2f74656d700032312e35",
            paho_publish(QoS::AtMostOnce, 0, false, b"21.5"),
        ),
        ("324a001473656e736f72732f6b69746368656e2f74656d7000032d0101020000003c03000a746578742f706c61696e08000a7265706c792f7061686f09000201022600016b00017632322e30", q1),
        ("354a001473656e736f72732f6b69746368656e2f74656d7000042d0101020000003c03000a746578742f706c61696e08000a7265706c792f7061686f09000201022600016b00017632322e35", q2),
    ];
    for (h, expected) in cases {
        let bytes = hex(h);
        let p = decode_after_connect(ProtocolVersion::V5, &bytes).unwrap();
        assert_eq!(p, Packet::Publish(expected));
        assert_eq!(encode(ProtocolVersion::V5, &p), bytes);
    }
}

#[test]
fn publish_payload_is_a_zero_copy_slice() {
    let bytes = hex("321c001473656e736f72732f6b69746368656e2f74656d70000332322e30");
    let mut codec = connected(ProtocolVersion::V311);
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = codec.decode(&mut buf).unwrap() else {
        panic!("not a publish")
    };
    assert_eq!(p.payload.as_ptr() as usize, base + bytes.len() - 4);
}

#[test]
fn paho_pubrel_unsubscribe_disconnect() {
    for (version, unsub) in [
        (ProtocolVersion::V311, "a20900050005636d642f23"),
        (ProtocolVersion::V5, "a20a0005000005636d642f23"),
    ] {
        let p = decode_after_connect(version, &hex("62020004")).unwrap();
        assert_eq!(
            p,
            Packet::PubRel(PubRel {
                packet_id: 4,
                ..Default::default()
            })
        );
        assert_eq!(encode(version, &p), hex("62020004"));
        let p = decode_after_connect(version, &hex(unsub)).unwrap();
        assert_eq!(
            p,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 5,
                filters: vec!["cmd/#".into()],
                user_properties: vec![],
            })
        );
        assert_eq!(encode(version, &p), hex(unsub));
        let p = decode_after_connect(version, &hex("e000")).unwrap();
        assert_eq!(p, Packet::Disconnect(Disconnect::default()));
        assert_eq!(encode(version, &p), hex("e000"));
    }
}

#[test]
fn connack_v311() {
    let accepted = Packet::ConnAck(ConnAck {
        session_present: true,
        ..Default::default()
    });
    assert_eq!(encode(ProtocolVersion::V311, &accepted), hex("20020100"));
    // v5 reason codes map to 3.1.1 return codes; a refusal never says session present.
    for (reason, code) in [
        (reason::UNSUPPORTED_PROTOCOL_VERSION, 1u8),
        (reason::CLIENT_IDENTIFIER_NOT_VALID, 2),
        (reason::SERVER_UNAVAILABLE, 3),
        (reason::SERVER_BUSY, 3),
        (reason::BAD_USER_NAME_OR_PASSWORD, 4),
        (reason::NOT_AUTHORIZED, 5),
        (reason::BANNED, 5),
    ] {
        let p = Packet::ConnAck(ConnAck {
            session_present: true,
            reason,
            ..Default::default()
        });
        assert_eq!(encode(ProtocolVersion::V311, &p), vec![0x20, 2, 0, code]);
    }
    let mut client = Codec::new_client(ProtocolVersion::V311, MAX);
    assert_eq!(decode_one(&mut client, &hex("20020100")).unwrap(), accepted);
}

#[test]
fn connack_v5() {
    let plain = Packet::ConnAck(ConnAck::default());
    assert_eq!(encode(ProtocolVersion::V5, &plain), hex("2003000000"));
    let rich = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: reason::SUCCESS,
        properties: ConnAckProperties {
            receive_maximum: Some(10),
            assigned_client_identifier: Some("auto-1".into()),
            topic_alias_maximum: Some(5),
            server_keep_alive: Some(30),
            shared_subscription_available: Some(true),
            ..Default::default()
        },
    });
    // mqttbytes' property order: 0x21, 0x12, 0x22, 0x2A, 0x13.
    let bytes = hex("2017 0000 14 21000a 12000661757 46f2d31 220005 2a01 13001e");
    assert_eq!(encode(ProtocolVersion::V5, &rich), bytes);
    let mut client = Codec::new_client(ProtocolVersion::V5, MAX);
    assert_eq!(decode_one(&mut client, &bytes).unwrap(), rich);
    let refused = Packet::ConnAck(ConnAck {
        reason: reason::NOT_AUTHORIZED,
        ..Default::default()
    });
    assert_eq!(encode(ProtocolVersion::V5, &refused), hex("2003008700"));
}

#[test]
fn server_acks_both_versions() {
    let puback = Packet::PubAck(PubAck {
        packet_id: 0x1234,
        ..Default::default()
    });
    assert_eq!(encode(ProtocolVersion::V311, &puback), hex("40021234"));
    assert_eq!(encode(ProtocolVersion::V5, &puback), hex("40021234"));
    let no_match = Packet::PubAck(PubAck {
        packet_id: 0x1234,
        reason: reason::NO_MATCHING_SUBSCRIBERS,
        ..Default::default()
    });
    assert_eq!(encode(ProtocolVersion::V5, &no_match), hex("4003123410"));
    // 3.1.1 has no reason codes.
    assert_eq!(encode(ProtocolVersion::V311, &no_match), hex("40021234"));
    let suback = Packet::SubAck(SubAck {
        packet_id: 1,
        reasons: vec![1, 2, reason::NOT_AUTHORIZED],
        ..Default::default()
    });
    assert_eq!(
        encode(ProtocolVersion::V311, &suback),
        hex("9005000101 0280")
    );
    assert_eq!(
        encode(ProtocolVersion::V5, &suback),
        hex("900600010001 0287")
    );
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 5,
        reasons: vec![reason::NO_SUBSCRIPTION_EXISTED],
        ..Default::default()
    });
    assert_eq!(encode(ProtocolVersion::V311, &unsuback), hex("b0020005"));
    assert_eq!(encode(ProtocolVersion::V5, &unsuback), hex("b004000500 11"));
    assert_eq!(encode(ProtocolVersion::V5, &Packet::PingResp), hex("d000"));
    let disconnect = Packet::Disconnect(Disconnect {
        reason: reason::SESSION_TAKEN_OVER,
        ..Default::default()
    });
    assert_eq!(encode(ProtocolVersion::V5, &disconnect), hex("e0018e"));
}
