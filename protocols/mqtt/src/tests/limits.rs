//! Size limits, streaming (partial input), packet order and direction, error reason codes.

use bytes::BytesMut;

use super::*;
use crate::reason;
use crate::*;

#[test]
fn oversize_is_refused_on_the_fixed_header_alone() {
    // A PUBLISH declaring 200 MB (remaining length 0x0BEBC200): only the 5 header bytes
    // are present and the codec refuses at once, without waiting for (or reserving) more.
    let mut codec = connected(ProtocolVersion::V311);
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x84, 0xAF, 0x5F][..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 5 + 200_000_000,
            max: MAX
        }
    );
    assert_eq!(err.reason_code(), reason::PACKET_TOO_LARGE);
    assert!(buf.capacity() < 64);

    // Also for the very first packet: a CONNECT can be too large too.
    let mut codec = Codec::new(1024);
    let mut buf = BytesMut::from(&[0x10, 0x80, 0x84, 0xAF, 0x5F][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { .. })
    ));
}

#[test]
fn the_limit_counts_the_fixed_header() {
    // PUBLISH "t", payload 3 bytes: remaining 6, total 8.
    let bytes = hex("3006 0001 74 616263");
    let mut codec = Codec::new(8);
    let mut buf = BytesMut::from(&connect_bytes(ProtocolVersion::V311)[..]);
    // The CONNECT itself is 15 bytes: over a limit of 8.
    assert!(matches!(
        codec.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 15, max: 8 })
    ));
    let mut codec = connected(ProtocolVersion::V311);
    codec.max_incoming = 8;
    assert!(decode_one(&mut codec, &bytes).is_ok());
    let mut codec = connected(ProtocolVersion::V311);
    codec.max_incoming = 7;
    assert_eq!(
        decode_one(&mut codec, &bytes).unwrap_err(),
        DecodeError::PacketTooLarge { size: 8, max: 7 }
    );
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    let mut codec = connected(ProtocolVersion::V5);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::MalformedRemainingLength);
    assert_eq!(err.reason_code(), reason::MALFORMED_PACKET);
    // Four continuation bytes so far: the fifth is certainly wrong, but a 4-byte prefix
    // with a continuation bit is just incomplete.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF][..]);
    let mut codec = Codec::new(usize::MAX);
    codec.connected = true;
    assert_eq!(codec.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 4);
    // The largest legal remaining length, 268,435,455, is accepted by the header parser.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(codec.decode(&mut buf), Ok(None));
}

/// A client session's worth of packets (paho's, both versions) fed one byte boundary at a
/// time decodes to exactly what the whole input decodes to, and `Ok(None)` never consumes.
#[test]
fn split_at_every_byte_boundary_decodes_identically() {
    let streams = [
        (
            ProtocolVersion::V311,
            [
                PAHO_CONNECT_V311,
                "821b0001000e73656e736f72732f2b2f74656d70010005636d642f2302",
                "321c001473656e736f72732f6b69746368656e2f74656d70000332322e30",
                "62020004",
                "c000",
                "e000",
            ]
            .concat(),
        ),
        (
            ProtocolVersion::V5,
            [
                PAHO_CONNECT_V5,
                "821e0001020b07000e73656e736f72732f2b2f74656d701d0005636d642f2302",
                "324a001473656e736f72732f6b69746368656e2f74656d7000032d0101020000003c03000a746578742f706c61696e08000a7265706c792f7061686f09000201022600016b00017632322e30",
                "a20a0005000005636d642f23",
                "c000",
                "e000",
            ]
            .concat(),
        ),
    ];
    for (version, stream) in streams {
        let bytes = hex(&stream);
        let whole = decode_stream(&bytes, &[bytes.len()]);
        assert_eq!(whole.len(), 6);
        for split in 0..=bytes.len() {
            assert_eq!(
                decode_stream(&bytes, &[split, bytes.len() - split]),
                whole,
                "{version:?} split at {split}"
            );
        }
        // And one byte at a time.
        assert_eq!(decode_stream(&bytes, &vec![1; bytes.len()]), whole);
    }
}

/// Feeds `bytes` in chunks of the given sizes, decoding greedily after each.
pub(super) fn decode_stream(bytes: &[u8], chunks: &[usize]) -> Vec<Packet> {
    let mut codec = Codec::new(MAX);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut at = 0;
    for &n in chunks {
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        loop {
            let before = buf.len();
            match codec.decode(&mut buf).unwrap() {
                Some(p) => packets.push(p),
                None => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed input");
                    break;
                }
            }
        }
    }
    assert!(buf.is_empty());
    packets
}

#[test]
fn first_packet_must_be_connect() {
    for first in [
        hex("c000"),
        hex("3006 0001 74 616263"),
        hex("e000"),
        hex("20020000"),
        vec![0x82],
    ] {
        let mut codec = Codec::new(MAX);
        let mut buf = BytesMut::from(&first[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(err, DecodeError::FirstPacketNotConnect, "{first:02x?}");
        assert_eq!(err.reason_code(), reason::PROTOCOL_ERROR);
    }
}

#[test]
fn second_connect_is_a_protocol_error() {
    let mut codec = connected(ProtocolVersion::V5);
    let err = decode_one(&mut codec, &connect_bytes(ProtocolVersion::V5)).unwrap_err();
    assert_eq!(err, DecodeError::ProtocolError("second CONNECT"));
    assert_eq!(err.reason_code(), reason::PROTOCOL_ERROR);
}

#[test]
fn server_packets_from_a_client_are_refused() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for bytes in [
            hex("20020000"),   // CONNACK
            hex("9003000100"), // SUBACK
            hex("b0020001"),   // UNSUBACK
            hex("d000"),       // PINGRESP
        ] {
            let err = decode_after_connect(version, &bytes).unwrap_err();
            assert!(matches!(err, DecodeError::ProtocolError(_)), "{err:?}");
        }
        assert!(matches!(
            decode_after_connect(version, &hex("0000")),
            Err(DecodeError::Malformed(_))
        ));
    }
    // AUTH is packet type 15: reserved in 3.1.1, valid in 5.0.
    assert!(matches!(
        decode_after_connect(ProtocolVersion::V311, &hex("f000")),
        Err(DecodeError::Malformed(_))
    ));
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &hex("f000")).unwrap(),
        Packet::Auth(Auth::default())
    );
}

#[test]
fn client_codec_refuses_client_packets() {
    let mut client = Codec::new_client(ProtocolVersion::V5, MAX);
    for bytes in [
        connect_bytes(ProtocolVersion::V5),
        hex("c000"),
        hex("a2050001000000"),
    ] {
        assert!(matches!(
            decode_one(&mut client, &bytes),
            Err(DecodeError::ProtocolError(_))
        ));
    }
    let mut client = Codec::new_client(ProtocolVersion::V311, MAX);
    assert!(matches!(
        decode_one(&mut client, &hex("e000")),
        Err(DecodeError::ProtocolError(_))
    ));
}

#[test]
fn unsupported_protocol_versions() {
    // MQTT 3.1: "MQIsdp", level 3.
    let mqisdp = hex("100f 0006 4d5149736470 03 02 003c 0001 63");
    let mut codec = Codec::new(MAX);
    let err = decode_one(&mut codec, &mqisdp).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion(3));
    assert_eq!(err.reason_code(), reason::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(codec.version(), None);
    let level6 = hex("100d 0004 4d515454 06 02 003c 0001 63");
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &level6).unwrap_err(),
        DecodeError::UnsupportedProtocolVersion(6)
    );
    let bad_name = hex("100d 0004 4d515458 04 02 003c 0001 63");
    assert_eq!(
        decode_one(&mut Codec::new(MAX), &bad_name).unwrap_err(),
        DecodeError::InvalidProtocolName
    );
}

#[test]
fn failed_v5_connect_still_tells_the_version() {
    // A v5 CONNECT with Receive Maximum 0: refused, but the listener can answer in v5.
    let bytes = hex("1011 0004 4d515454 05 02 003c 03 210000 0001 63");
    let mut codec = Codec::new(MAX);
    assert_eq!(
        decode_one(&mut codec, &bytes).unwrap_err(),
        DecodeError::ProtocolError("receive maximum 0")
    );
    assert_eq!(codec.version(), Some(ProtocolVersion::V5));
}

#[test]
fn max_outgoing_packet_size() {
    let mut codec = connected(ProtocolVersion::V5);
    codec.set_max_outgoing_packet_size(Some(20));
    let publish = |n: usize| {
        Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![0u8; n].into(),
            ..Default::default()
        })
    };
    // 2 header + 3 topic + 1 property length + n payload
    let mut out = BytesMut::from(&b"previous"[..]);
    codec.encode(&publish(14), &mut out).unwrap();
    assert_eq!(out.len(), 8 + 20);
    let err = codec.encode(&publish(15), &mut out).unwrap_err();
    assert_eq!(err, EncodeError::PacketTooLarge { size: 21, max: 20 });
    assert_eq!(out.len(), 28, "nothing appended on error");

    // A v5 ack over the limit loses its reason string and user properties instead.
    let ack = Packet::PubAck(PubAck {
        packet_id: 1,
        reason: reason::QUOTA_EXCEEDED,
        properties: AckProperties {
            reason_string: Some("x".repeat(100)),
            user_properties: vec![("k".into(), "v".into())],
        },
    });
    let mut out = BytesMut::new();
    codec.encode(&ack, &mut out).unwrap();
    assert_eq!(&out[..], &hex("4003000197")[..]);

    codec.set_max_outgoing_packet_size(None);
    let mut out = BytesMut::new();
    codec.encode(&publish(1000), &mut out).unwrap();
}

#[test]
fn encode_errors_append_nothing() {
    let cases = [
        (
            ProtocolVersion::V311,
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                packet_id: 0,
                topic: "t".into(),
                ..Default::default()
            }),
            EncodeError::PacketIdZero,
        ),
        (
            ProtocolVersion::V5,
            Packet::Publish(Publish {
                topic: "t".repeat(70_000),
                ..Default::default()
            }),
            EncodeError::StringTooLong(70_000),
        ),
        (
            ProtocolVersion::V311,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![SubscribeFilter {
                    filter: "f".repeat(70_000),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            EncodeError::StringTooLong(70_000),
        ),
        (
            ProtocolVersion::V5,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![],
                ..Default::default()
            }),
            EncodeError::InvalidField("SUBSCRIBE/UNSUBSCRIBE without topic filters"),
        ),
        (
            ProtocolVersion::V5,
            Packet::PubAck(PubAck {
                packet_id: 1,
                reason: reason::GRANTED_QOS_2,
                ..Default::default()
            }),
            EncodeError::InvalidReasonCode {
                code: 2,
                packet: "PUBACK",
            },
        ),
        (
            ProtocolVersion::V311,
            Packet::Auth(Auth::default()),
            EncodeError::NotInVersion("AUTH"),
        ),
        (
            ProtocolVersion::V311,
            Packet::Connect(Connect {
                password: Some(bytes::Bytes::from_static(b"p")),
                ..Default::default()
            }),
            EncodeError::InvalidField("password without user name in MQTT 3.1.1"),
        ),
        (
            ProtocolVersion::V5,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![SubscribeFilter {
                    filter: "a".into(),
                    retain_handling: 3,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            EncodeError::InvalidField("retain handling 3"),
        ),
        (
            ProtocolVersion::V5,
            Packet::ConnAck(ConnAck {
                reason: reason::GRANTED_QOS_1,
                ..Default::default()
            }),
            EncodeError::InvalidReasonCode {
                code: 1,
                packet: "CONNACK",
            },
        ),
        (
            ProtocolVersion::V5,
            Packet::Publish(Publish {
                topic: "t".into(),
                properties: PublishProperties {
                    subscription_identifiers: vec![0],
                    ..Default::default()
                },
                ..Default::default()
            }),
            EncodeError::InvalidField("subscription identifier outside 1..=268435455"),
        ),
    ];
    for (version, packet, expected) in cases {
        let mut out = BytesMut::from(&b"xy"[..]);
        assert_eq!(
            Codec::encode_with(version, &packet, &mut out),
            Err(expected)
        );
        assert_eq!(&out[..], b"xy");
    }
}

#[test]
fn reason_code_mapping() {
    use crate::reason::*;
    assert_eq!(connack_v4_from_v5(SUCCESS), CONNACK_V4_ACCEPTED);
    assert_eq!(
        connack_v4_from_v5(UNSUPPORTED_PROTOCOL_VERSION),
        CONNACK_V4_UNACCEPTABLE_PROTOCOL_VERSION
    );
    assert_eq!(
        connack_v4_from_v5(CLIENT_IDENTIFIER_NOT_VALID),
        CONNACK_V4_IDENTIFIER_REJECTED
    );
    assert_eq!(
        connack_v4_from_v5(BAD_USER_NAME_OR_PASSWORD),
        CONNACK_V4_BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack_v4_from_v5(NOT_AUTHORIZED),
        CONNACK_V4_NOT_AUTHORIZED
    );
    assert_eq!(connack_v4_from_v5(BANNED), CONNACK_V4_NOT_AUTHORIZED);
    for other in [
        SERVER_UNAVAILABLE,
        SERVER_BUSY,
        MALFORMED_PACKET,
        QUOTA_EXCEEDED,
    ] {
        assert_eq!(connack_v4_from_v5(other), CONNACK_V4_SERVER_UNAVAILABLE);
    }
    for code in 0..=5 {
        assert_eq!(connack_v4_from_v5(connack_v5_from_v4(code)), code);
    }
}

#[test]
fn v5_subscribe_rules() {
    // No Local on a shared subscription [MQTT-3.8.3-4].
    let shared = hex("8210 0001 00 000a 2473686172652f672f61 04");
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &shared).unwrap_err(),
        DecodeError::ProtocolError("No Local on a shared subscription")
    );
    // Retain Handling 3.
    assert_eq!(
        decode_after_connect(ProtocolVersion::V5, &hex("8207 0001 00 0001 61 30")).unwrap_err(),
        DecodeError::ProtocolError("retain handling 3")
    );
    // Invalid filters are the broker's call (SUBACK 0x8F per filter), not a decode error.
    let Packet::Subscribe(s) =
        decode_after_connect(ProtocolVersion::V5, &hex("8208 0001 00 0002 612b 00")).unwrap()
    else {
        panic!()
    };
    assert_eq!(s.filters[0].filter, "a+");
    assert!(!crate::topic::valid_topic_filter(&s.filters[0].filter));
}

#[test]
fn client_codec_refuses_session_present_on_refusal() {
    let mut client = Codec::new_client(ProtocolVersion::V311, MAX);
    assert!(matches!(
        decode_one(&mut client, &hex("20020105")),
        Err(DecodeError::ProtocolError(_))
    ));
    let mut client = Codec::new_client(ProtocolVersion::V5, MAX);
    assert!(matches!(
        decode_one(&mut client, &hex("2003018700")),
        Err(DecodeError::ProtocolError(_))
    ));
}
