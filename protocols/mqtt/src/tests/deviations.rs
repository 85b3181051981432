//! Every place where mqttbytes 0.6 deviates from the MQTT 3.1.1 / 5.0 specs: each test
//! shows what mqttbytes does with the input, then what this crate does.
//!
//! (mqttbytes' v5 UNSUBSCRIBE decoder also prints every packet id to stderr with `dbg!`;
//! this crate decodes v5 UNSUBSCRIBE by hand, see `v5_unsubscribe_is_decoded_by_hand`.)

use bytes::{Bytes, BytesMut};
use mqttbytes::{v4, v5};

use super::*;
use crate::reason;
use crate::*;

fn mb4(bytes: &[u8]) -> Result<v4::Packet, mqttbytes::Error> {
    v4::read(&mut BytesMut::from(bytes), MAX)
}

fn mb5(bytes: &[u8]) -> Result<v5::Packet, mqttbytes::Error> {
    v5::read(&mut BytesMut::from(bytes), MAX)
}

fn v4_err(bytes: &[u8]) -> DecodeError {
    decode_after_connect(ProtocolVersion::V311, bytes).unwrap_err()
}

fn v5_err(bytes: &[u8]) -> DecodeError {
    decode_after_connect(ProtocolVersion::V5, bytes).unwrap_err()
}

#[test]
fn size_limit_counts_the_whole_packet() {
    // mqttbytes compares the limit with the remaining length only: an 8-byte packet
    // passes a limit of 7. MQTT 5.0 §3.1.2.11.4: the size is the total packet size.
    let bytes = hex("3006 0001 74 616263");
    assert!(mqttbytes::check(bytes.iter(), 7).is_ok());
    let mut codec = connected(ProtocolVersion::V311);
    codec.max_incoming = 7;
    assert_eq!(
        decode_one(&mut codec, &bytes).unwrap_err(),
        DecodeError::PacketTooLarge { size: 8, max: 7 }
    );
}

#[test]
fn remaining_length_over_4_bytes() {
    // Both refuse; this crate before the body arrives, with its own error.
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    assert_eq!(
        mb4(&bytes).unwrap_err(),
        mqttbytes::Error::MalformedRemainingLength
    );
    assert_eq!(v4_err(&bytes), DecodeError::MalformedRemainingLength);
}

#[test]
fn reserved_fixed_header_flags() {
    // [MQTT-2.2.2-2]: SUBSCRIBE/UNSUBSCRIBE/PUBREL flags are 0b0010, all others 0b0000.
    // mqttbytes never looks at them.
    let bad = [
        hex("800a0001 0005 636d642f23 00"), // SUBSCRIBE with flags 0
        hex("a0070001 0003 612f62"),        // UNSUBSCRIBE with flags 0
        hex("60020001"),                    // PUBREL with flags 0
        hex("41020001"),                    // PUBACK with flags 1
        hex("c100"),                        // PINGREQ with flags 1
    ];
    for bytes in &bad {
        assert!(mb4(bytes).is_ok(), "{bytes:02x?}");
        assert_eq!(
            v4_err(bytes),
            DecodeError::Malformed("reserved fixed header flags")
        );
    }
    // A v5 DISCONNECT is the one place mqttbytes checks them.
    assert!(mb5(&hex("e1020000")).is_err());
}

#[test]
fn qos_3_and_dup_on_qos_0() {
    // QoS 3: both refuse (this crate on the first byte) [MQTT-3.3.1-4].
    let qos3 = hex("3606 0001 74 0001 61");
    assert!(mb4(&qos3).is_err());
    assert_eq!(v4_err(&qos3), DecodeError::Malformed("QoS 3"));
    // DUP on QoS 0 [MQTT-3.3.1-2]: mqttbytes accepts it.
    let dup0 = hex("3804 0001 74 61");
    assert!(mb4(&dup0).is_ok());
    assert_eq!(
        v4_err(&dup0),
        DecodeError::Malformed("DUP set on a QoS 0 PUBLISH")
    );
}

#[test]
fn packet_identifier_zero() {
    // PUBLISH QoS 1 with id 0: both refuse [MQTT-2.2.1-3].
    let publish = hex("3205 0001 74 0000");
    assert_eq!(mb4(&publish).unwrap_err(), mqttbytes::Error::PacketIdZero);
    assert_eq!(
        v4_err(&publish),
        DecodeError::ProtocolError("packet identifier 0")
    );
    // SUBSCRIBE, UNSUBSCRIBE and acks with id 0: mqttbytes accepts them.
    for bytes in [
        hex("8206 0000 0001 61 00"),
        hex("a205 0000 0001 61"),
        hex("40020000"),
    ] {
        assert!(mb4(&bytes).is_ok());
        assert_eq!(
            v4_err(&bytes),
            DecodeError::ProtocolError("packet identifier 0")
        );
    }
}

#[test]
fn subscribe_and_unsubscribe_without_filters() {
    // [MQTT-3.8.3-3], [MQTT-3.10.3-2]: at least one filter. mqttbytes accepts none.
    let sub4 = hex("82020001");
    let unsub4 = hex("a2020001");
    assert!(matches!(mb4(&sub4), Ok(v4::Packet::Subscribe(s)) if s.filters.is_empty()));
    assert!(matches!(mb4(&unsub4), Ok(v4::Packet::Unsubscribe(u)) if u.topics.is_empty()));
    assert_eq!(
        v4_err(&sub4),
        DecodeError::ProtocolError("SUBSCRIBE with no topic filters")
    );
    assert_eq!(
        v4_err(&unsub4),
        DecodeError::ProtocolError("UNSUBSCRIBE with no topic filters")
    );
    let sub5 = hex("8203000100");
    assert!(matches!(mb5(&sub5), Ok(v5::Packet::Subscribe(s)) if s.filters.is_empty()));
    assert_eq!(
        v5_err(&sub5),
        DecodeError::ProtocolError("SUBSCRIBE with no topic filters")
    );
    assert_eq!(
        v5_err(&hex("a203000100")),
        DecodeError::ProtocolError("UNSUBSCRIBE with no topic filters")
    );
}

#[test]
fn subscription_option_reserved_bits() {
    // 3.1.1: bits 7..2 must be 0 [MQTT-3.8.3-4]; v5: bits 7..6 [MQTT-3-8.3-5].
    let v4_bytes = hex("8206 0001 0001 61 04");
    assert!(mb4(&v4_bytes).is_ok());
    assert!(matches!(v4_err(&v4_bytes), DecodeError::Malformed(_)));
    let v5_bytes = hex("8207 0001 00 0001 61 40");
    assert!(mb5(&v5_bytes).is_ok());
    assert!(matches!(v5_err(&v5_bytes), DecodeError::Malformed(_)));
}

#[test]
fn u0000_and_invalid_utf8_in_strings() {
    // [MQTT-1.5.3-2]: U+0000 is malformed. mqttbytes accepts it in topics and filters.
    let topic_nul = hex("3006 0003 61 00 62 78");
    assert!(mb4(&topic_nul).is_ok());
    assert_eq!(v4_err(&topic_nul), DecodeError::InvalidUtf8);
    let filter_nul = hex("8208 0001 0003 61 00 62 00");
    assert!(mb4(&filter_nul).is_ok());
    assert_eq!(v4_err(&filter_nul), DecodeError::InvalidUtf8);
    // Ill-formed UTF-8 (a lone surrogate encoded as ED A0 80): both refuse.
    let surrogate = hex("3006 0003 eda080 78");
    assert_eq!(mb4(&surrogate).unwrap_err(), mqttbytes::Error::TopicNotUtf8);
    assert_eq!(v4_err(&surrogate), DecodeError::InvalidUtf8);
    assert_eq!(v4_err(&surrogate).reason_code(), reason::MALFORMED_PACKET);
    // U+0000 in a v5 user property: mqttbytes' property parser accepts it too.
    let prop_nul = hex("300c 0001 74 07 26 0001 00 0001 76 78");
    assert!(mb5(&prop_nul).is_ok());
    assert_eq!(v5_err(&prop_nul), DecodeError::InvalidUtf8);
}

#[test]
fn publish_topic_with_wildcards_or_empty() {
    // [MQTT-3.3.2-2]: no wildcards in a topic name; mqttbytes accepts them.
    let wild = hex("3005 0001 23 6161");
    assert!(mb4(&wild).is_ok());
    assert_eq!(v4_err(&wild), DecodeError::TopicNameInvalid);
    assert_eq!(v4_err(&wild).reason_code(), reason::TOPIC_NAME_INVALID);
    // An empty topic is only valid in v5 with a topic alias.
    let empty4 = hex("3004 0000 6161");
    assert!(mb4(&empty4).is_ok());
    assert_eq!(v4_err(&empty4), DecodeError::TopicNameInvalid);
    assert_eq!(
        v5_err(&hex("3005 0000 00 6161")),
        DecodeError::TopicNameInvalid
    );
    let aliased = decode_after_connect(ProtocolVersion::V5, &hex("3008 0000 03 230005 6161"));
    assert!(
        matches!(aliased, Ok(Packet::Publish(p)) if p.topic.is_empty()
        && p.properties.topic_alias == Some(5))
    );
}

#[test]
fn connect_reserved_flag_and_will_flags() {
    // Reserved flag bit 0 [MQTT-3.1.2-3]: mqttbytes ignores it.
    let reserved = hex("100d 0004 4d515454 04 03 003c 0001 63");
    assert!(mb4(&reserved).is_ok());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &reserved).unwrap_err(),
        DecodeError::Malformed("reserved connect flag set")
    );
    // Will QoS / retain without the will flag [MQTT-3.1.2-11, -13, -15]: both refuse.
    for flags in [0x0A, 0x12, 0x22] {
        let bytes = hex(&format!("100d 0004 4d515454 04 {flags:02x} 003c 0001 63"));
        assert!(mb4(&bytes).is_err());
        assert_eq!(
            decode_one(&mut Codec::new(MAX), &bytes).unwrap_err(),
            DecodeError::Malformed("will QoS or retain set without will flag")
        );
    }
    // Will QoS 3 [MQTT-3.1.2-14]: both refuse.
    let qos3 = hex("1013 0004 4d515454 04 1e 003c 0001 63 0001 74 0001 78");
    assert!(mb4(&qos3).is_err());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &qos3).unwrap_err(),
        DecodeError::Malformed("will QoS 3")
    );
    // A will topic with wildcards: mqttbytes accepts it.
    let will_wild = hex("1013 0004 4d515454 04 06 003c 0001 63 0001 23 0001 78");
    assert!(mb4(&will_wild).is_ok());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &will_wild).unwrap_err(),
        DecodeError::TopicNameInvalid
    );
}

#[test]
fn connect_password_without_username_in_311() {
    // [MQTT-3.1.2-22]: mqttbytes accepts it (as a Login with an empty user name).
    let bytes = hex("1012 0004 4d515454 04 42 003c 0001 63 0003 707764");
    assert!(mb4(&bytes).is_ok());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &bytes).unwrap_err(),
        DecodeError::Malformed("password flag without user name flag")
    );
    // MQTT 5 allows it.
    let v5_bytes = hex("1013 0004 4d515454 05 42 003c 00 0001 63 0003 707764");
    let Packet::Connect(c) = decode_one(&mut Codec::new(MAX), &v5_bytes).unwrap() else {
        panic!()
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password, Some(Bytes::from_static(b"pwd")));
}

#[test]
fn connect_binary_password_and_empty_username() {
    // Password is Binary Data (MQTT 3.1.1 §3.1.3.5): mqttbytes decodes it as a String and
    // refuses non-UTF-8 passwords.
    let binary = hex("1015 0004 4d515454 04 c2 003c 0001 63 0001 75 0003 ff00fe");
    assert_eq!(mb4(&binary).unwrap_err(), mqttbytes::Error::TopicNotUtf8);
    let Packet::Connect(c) = decode_one(&mut Codec::new(MAX), &binary).unwrap() else {
        panic!()
    };
    assert_eq!(c.password, Some(Bytes::from_static(&[0xFF, 0x00, 0xFE])));
    // An empty user name with the flag set: mqttbytes drops the login entirely.
    let empty = hex("100f 0004 4d515454 04 82 003c 0001 63 0000");
    assert!(matches!(mb4(&empty), Ok(v4::Packet::Connect(c)) if c.login.is_none()));
    let Packet::Connect(c) = decode_one(&mut Codec::new(MAX), &empty).unwrap() else {
        panic!()
    };
    assert_eq!(c.username, Some(String::new()));
    // And it cannot encode them either: an empty user name loses its flag.
    let mut out = BytesMut::new();
    let mut connect = v4::Connect::new("c");
    connect.set_login("", "");
    connect.write(&mut out).unwrap();
    assert_eq!(out[9] & 0xC0, 0);
    assert_eq!(encode(ProtocolVersion::V311, &Packet::Connect(c)), empty);
}

#[test]
fn connect_trailing_bytes_and_mqisdp() {
    let trailing = hex("100e 0004 4d515454 04 02 003c 0001 63 ff");
    assert!(mb4(&trailing).is_ok());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &trailing).unwrap_err(),
        DecodeError::Malformed("bytes after the CONNECT payload")
    );
    // MQTT 3.1 ("MQIsdp", level 3) is told apart from garbage.
    let mqisdp = hex("100f 0006 4d5149736470 03 02 003c 0001 63");
    assert_eq!(mb4(&mqisdp).unwrap_err(), mqttbytes::Error::InvalidProtocol);
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &mqisdp).unwrap_err(),
        DecodeError::UnsupportedProtocolVersion(3)
    );
}

#[test]
fn acks_and_pings_with_wrong_lengths() {
    // 3.1.1 PUBACK is exactly 2 bytes; mqttbytes ignores extra bytes.
    let puback = hex("4003 0001 00");
    assert!(mb4(&puback).is_ok());
    assert!(matches!(v4_err(&puback), DecodeError::Malformed(_)));
    // PINGREQ and 3.1.1 DISCONNECT have no body; mqttbytes accepts one.
    for bytes in [hex("c00100"), hex("e00100")] {
        assert!(mb4(&bytes).is_ok());
        assert!(matches!(v4_err(&bytes), DecodeError::Malformed(_)));
    }
}

#[test]
fn v5_disconnect_short_forms() {
    // MQTT 5.0 §3.14.2.1: remaining length 0 = normal disconnection, 1 = reason only.
    // mqttbytes refuses both (PayloadRequired / InsufficientBytes).
    assert_eq!(
        mb5(&hex("e000")).unwrap_err(),
        mqttbytes::Error::PayloadRequired
    );
    assert!(mb5(&hex("e00104")).is_err());
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &hex("e000")).unwrap(),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &hex("e00104")).unwrap(),
        Packet::Disconnect(Disconnect {
            reason: reason::DISCONNECT_WITH_WILL,
            ..Default::default()
        })
    );
}

#[test]
fn v5_property_runs_past_property_length() {
    // Property Length 1, but Message Expiry (0x02) needs 5 bytes: mqttbytes reads into the
    // payload and returns a shortened payload.
    let bytes = hex("300a 0001 74 01 02 00000001 78");
    let Ok(v5::Packet::Publish(p)) = mb5(&bytes) else {
        panic!()
    };
    assert_eq!(&p.payload[..], b"x");
    assert_eq!(
        v5_err(&bytes),
        DecodeError::Malformed("property value runs past the property length")
    );
}

#[test]
fn v5_duplicate_properties() {
    // "It is a Protocol Error to include [a property] more than once" (MQTT 5.0 §3.3.2.3);
    // mqttbytes keeps the last.
    let bytes = hex("300f 0001 74 0a 02 00000001 02 00000002 78");
    assert!(matches!(mb5(&bytes), Ok(v5::Packet::Publish(p))
        if p.properties.as_ref().and_then(|p| p.message_expiry_interval) == Some(2)));
    assert_eq!(v5_err(&bytes), DecodeError::DuplicateProperty(0x02));
    assert_eq!(v5_err(&bytes).reason_code(), reason::PROTOCOL_ERROR);
    // User Property may repeat.
    let users = hex("3012 0001 74 0e 26 0001 61 0001 62 26 0001 61 0001 63");
    let Packet::Publish(p) = decode_after_connect(ProtocolVersion::V5, &users).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 2);
    // A Subscription Identifier twice in a SUBSCRIBE is a protocol error too.
    let sub = hex("820b 0001 04 0b01 0b02 0001 61 00");
    assert_eq!(v5_err(&sub), DecodeError::DuplicateProperty(0x0B));
}

#[test]
fn v5_receive_maximum_zero_and_other_bad_values() {
    // CONNECT with Receive Maximum 0 [MQTT-3.1.2-… "Protocol Error"]: mqttbytes accepts.
    let bytes = hex("1011 0004 4d515454 05 02 003c 03 210000 0001 63");
    assert!(mb5(&bytes).is_ok());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &bytes).unwrap_err(),
        DecodeError::ProtocolError("receive maximum 0")
    );
    // Maximum Packet Size 0 and Request Problem Information 2.
    let mps = hex("1013 0004 4d515454 05 02 003c 05 2700000000 0001 63");
    assert!(mb5(&mps).is_ok());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &mps).unwrap_err(),
        DecodeError::ProtocolError("maximum packet size 0")
    );
    let rpi = hex("1010 0004 4d515454 05 02 003c 02 1702 0001 63");
    assert!(mb5(&rpi).is_ok());
    assert!(matches!(
        decode_one(&mut Codec::new(MAX), &rpi).unwrap_err(),
        DecodeError::ProtocolError(_)
    ));
    // Authentication Data without Authentication Method.
    let auth = hex("1012 0004 4d515454 05 02 003c 04 16000161 0001 63");
    assert!(mb5(&auth).is_ok());
    assert!(matches!(
        decode_one(&mut Codec::new(MAX), &auth).unwrap_err(),
        DecodeError::ProtocolError(_)
    ));
}

#[test]
fn v5_topic_alias_zero() {
    // [MQTT-3.3.2-8]: Topic Alias 0 is invalid (DISCONNECT 0x94); mqttbytes accepts it.
    let bytes = hex("3008 0001 74 03 230000 78");
    assert!(mb5(&bytes).is_ok());
    let err = v5_err(&bytes);
    assert_eq!(err, DecodeError::TopicAliasInvalid);
    assert_eq!(err.reason_code(), reason::TOPIC_ALIAS_INVALID);
}

#[test]
fn v5_subscription_identifier_zero_and_from_client() {
    // Subscription Identifier 0 is a protocol error (MQTT 5.0 §3.8.2.1.2).
    let sub = hex("8209 0001 02 0b00 0001 61 00");
    assert!(mb5(&sub).is_ok());
    assert_eq!(
        v5_err(&sub),
        DecodeError::ProtocolError("subscription identifier 0")
    );
    // A client PUBLISH must not carry one [MQTT-3.3.4-6]; a server PUBLISH may, repeated.
    let publish = hex("3009 0001 74 04 0b01 0b02 78");
    assert!(mb5(&publish).is_ok());
    assert!(matches!(v5_err(&publish), DecodeError::ProtocolError(_)));
    let mut client = Codec::new_client(ProtocolVersion::V5, MAX);
    let Packet::Publish(p) = decode_one(&mut client, &publish).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
}

#[test]
fn v5_properties_not_allowed_for_the_packet() {
    // Session Expiry (0x11) in a PUBLISH, Topic Alias (0x23) in a will: both refuse.
    let publish = hex("3009 0001 74 05 1100000001");
    assert!(mb5(&publish).is_err());
    assert_eq!(
        v5_err(&publish),
        DecodeError::PropertyNotAllowed {
            property: 0x11,
            packet: "PUBLISH"
        }
    );
    assert_eq!(v5_err(&publish).reason_code(), reason::MALFORMED_PACKET);
    let will = hex("1018 0004 4d515454 05 06 003c 00 0001 63 03 230001 0001 74 0001 78");
    assert!(mb5(&will).is_err());
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &will).unwrap_err(),
        DecodeError::PropertyNotAllowed {
            property: 0x23,
            packet: "will properties"
        }
    );
    // An unknown identifier.
    assert_eq!(
        v5_err(&hex("3006 0001 74 02 0500")),
        DecodeError::UnknownProperty(0x05)
    );
}

#[test]
fn v5_unsubscribe_is_decoded_by_hand() {
    // mqttbytes' v5 Unsubscribe::read has a leftover `dbg!(pkid)`; this crate's decoder is
    // its own and returns the same model.
    let bytes = hex("a20a0005000005636d642f23");
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &bytes).unwrap(),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 5,
            filters: vec!["cmd/#".into()],
            user_properties: vec![]
        })
    );
}

#[test]
fn auth_packet_is_missing_from_mqttbytes() {
    // AUTH (type 15) with Continue Authentication and a method.
    let bytes = hex("f00a 18 08 1500055343524d31");
    assert_eq!(
        mb5(&bytes).unwrap_err(),
        mqttbytes::Error::InvalidPacketType(15)
    );
    let expected = Packet::Auth(Auth {
        reason: reason::CONTINUE_AUTHENTICATION,
        authentication_method: Some("SCRM1".into()),
        ..Default::default()
    });
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &bytes).unwrap(),
        expected
    );
    assert_eq!(encode(ProtocolVersion::V5, &expected), bytes);
}

#[test]
fn v5_connack_needs_its_property_length() {
    // MQTT 5.0 §3.2.2.3: CONNACK always has a Property Length. mqttbytes leaves it out
    // when there are no properties; a v5 client then fails to parse the CONNACK.
    let mut out = BytesMut::new();
    v5::ConnAck::new(v5::ConnectReturnCode::Success, false)
        .write(&mut out)
        .unwrap();
    assert_eq!(&out[..], &hex("20020000")[..]);
    assert_eq!(
        encode(ProtocolVersion::V5, &Packet::ConnAck(ConnAck::default())),
        hex("2003000000")
    );
}

#[test]
fn long_strings_are_truncated_by_mqttbytes_encoders() {
    // mqttbytes writes `len as u16`: a 65,537-byte filter gets length 1 and a corrupt packet.
    let filter = "a".repeat(65_537);
    let mut out = BytesMut::new();
    v4::Subscribe::new(filter.clone(), mqttbytes::QoS::AtMostOnce)
        .write(&mut out)
        .unwrap();
    assert_eq!(&out[6..8], &[0x00, 0x01]);
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter,
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(
        Codec::encode_with(ProtocolVersion::V311, &packet, &mut BytesMut::new()),
        Err(EncodeError::StringTooLong(65_537))
    );
}

#[test]
fn publish_encoder_agrees_with_mqttbytes() {
    // 3.1.1: byte-identical.
    let mut publish = v4::Publish::new("a/b", mqttbytes::QoS::AtLeastOnce, b"payload".to_vec());
    publish.pkid = 7;
    publish.retain = true;
    let mut theirs = BytesMut::new();
    publish.write(&mut theirs).unwrap();
    let ours = encode(
        ProtocolVersion::V311,
        &Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: 7,
            payload: Bytes::from_static(b"payload"),
            ..Default::default()
        }),
    );
    assert_eq!(ours, theirs.to_vec());
}
