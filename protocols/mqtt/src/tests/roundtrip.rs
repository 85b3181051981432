//! Property tests: decode(encode(p)) == p for every packet in both versions, arbitrary
//! bytes never panic, and chunked decoding equals whole decoding.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::*;
use crate::*;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)]
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

/// Any MQTT string: no U+0000, sometimes multi-byte.
fn string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/ éß€😀$_.-]{0,12}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9$]{1,6}(/[a-z0-9é]{0,6}){0,3}"
}

fn filter() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9/+#]{1,12}", topic_name()]
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((string(), string()), 0..3)
}

fn publish_properties(sub_ids: bool) -> impl Strategy<Value = PublishProperties> {
    (
        option::of(0u8..=1),
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(topic_name()),
        option::of(bin()),
        users(),
        if sub_ids {
            vec(1u32..=268_435_455, 0..3).boxed()
        } else {
            Just(vec![]).boxed()
        },
        option::of(string()),
    )
        .prop_map(
            |(
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            )| PublishProperties {
                payload_format_indicator,
                message_expiry_interval,
                topic_alias,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            },
        )
}

/// A PUBLISH valid in `version` (v5-only fields empty for 3.1.1); `from_server` allows
/// subscription identifiers.
fn publish(version: ProtocolVersion, from_server: bool) -> impl Strategy<Value = Publish> {
    let v5 = version == ProtocolVersion::V5;
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        1u16..,
        vec(any::<u8>(), 0..64),
        publish_properties(from_server),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, payload, props)| Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: if qos == QoS::AtMostOnce { 0 } else { id },
                payload: payload.into(),
                properties: if v5 { props } else { Default::default() },
            },
        )
}

fn ack_properties(v5: bool) -> impl Strategy<Value = AckProperties> {
    (option::of(string()), users()).prop_map(move |(reason_string, user_properties)| {
        if v5 {
            AckProperties {
                reason_string,
                user_properties,
            }
        } else {
            AckProperties::default()
        }
    })
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let v5 = version == ProtocolVersion::V5;
    (
        1u16..,
        vec(
            (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..=2),
            1..4,
        ),
        option::of(1u32..=268_435_455),
        users(),
    )
        .prop_map(move |(packet_id, filters, id, users)| Subscribe {
            packet_id,
            filters: filters
                .into_iter()
                .map(|(filter, qos, nl, rap, rh)| SubscribeFilter {
                    // No Local is a protocol error on a shared subscription.
                    no_local: v5 && nl && !filter.starts_with("$share/"),
                    filter,
                    qos,
                    retain_as_published: v5 && rap,
                    retain_handling: if v5 { rh } else { 0 },
                })
                .collect(),
            subscription_identifier: if v5 { id } else { None },
            user_properties: if v5 { users } else { vec![] },
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    let v5 = version == ProtocolVersion::V5;
    (1u16.., vec(filter(), 1..4), users()).prop_map(move |(packet_id, filters, users)| {
        Unsubscribe {
            packet_id,
            filters,
            user_properties: if v5 { users } else { vec![] },
        }
    })
}

/// Client → server acks (PUBACK, PUBREC, PUBREL, PUBCOMP).
fn client_ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version == ProtocolVersion::V5;
    (
        0..4usize,
        1u16..,
        prop::sample::select(vec![0x00u8, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]),
        prop::sample::select(vec![0x00u8, 0x92]),
        ack_properties(v5),
    )
        .prop_map(
            move |(kind, packet_id, pub_reason, rel_reason, properties)| {
                let reason = match (v5, kind) {
                    (false, _) => 0,
                    (true, 0 | 1) => pub_reason,
                    (true, _) => rel_reason,
                };
                match kind {
                    0 => Packet::PubAck(PubAck {
                        packet_id,
                        reason,
                        properties,
                    }),
                    1 => Packet::PubRec(PubRec {
                        packet_id,
                        reason,
                        properties,
                    }),
                    2 => Packet::PubRel(PubRel {
                        packet_id,
                        reason,
                        properties,
                    }),
                    _ => Packet::PubComp(PubComp {
                        packet_id,
                        reason,
                        properties,
                    }),
                }
            },
        )
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Connect> {
    let v5 = version == ProtocolVersion::V5;
    let will = (
        topic_name(),
        bin(),
        qos(),
        any::<bool>(),
        publish_properties(false),
        option::of(any::<u32>()),
    )
        .prop_map(
            move |(topic, payload, qos, retain, mut properties, delay)| {
                properties.topic_alias = None;
                Will {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties: if v5 { properties } else { Default::default() },
                    delay_interval: if v5 { delay } else { None },
                }
            },
        );
    let props = (
        option::of(any::<u32>()),
        option::of(1u16..),
        option::of(1u32..),
        option::of(any::<u16>()),
        option::of(0u8..=1),
        option::of(0u8..=1),
        users(),
        option::of((string(), option::of(bin()))),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, user_properties, auth)| {
            let (authentication_method, authentication_data) = match auth {
                Some((m, d)) => (Some(m), d),
                None => (None, None),
            };
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties,
                authentication_method,
                authentication_data,
            }
        });
    (
        string(),
        any::<bool>(),
        any::<u16>(),
        option::of(string()),
        option::of(bin()),
        option::of(will),
        props,
    )
        .prop_map(
            move |(client_id, clean_start, keep_alive, username, password, will, props)| Connect {
                protocol: version,
                client_id,
                clean_start,
                keep_alive,
                // 3.1.1 has no password without a user name.
                username: if !v5 && password.is_some() && username.is_none() {
                    Some(String::new())
                } else {
                    username
                },
                password,
                will,
                properties: if v5 { props } else { Default::default() },
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let v5 = version == ProtocolVersion::V5;
    let props = (
        (
            option::of(any::<u32>()),
            option::of(1u16..),
            option::of(0u8..=1),
            option::of(any::<bool>()),
            option::of(1u32..),
            option::of(string()),
            option::of(any::<u16>()),
            option::of(string()),
            users(),
        ),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<u16>()),
            option::of(string()),
            option::of(string()),
            option::of(string()),
            option::of(bin()),
        ),
    )
        .prop_map(|((a, b, c, d, e, f, g, h, i), (j, k, l, m, n, o, p, q))| {
            ConnAckProperties {
                session_expiry_interval: a,
                receive_maximum: b,
                maximum_qos: c,
                retain_available: d,
                maximum_packet_size: e,
                assigned_client_identifier: f,
                topic_alias_maximum: g,
                reason_string: h,
                user_properties: i,
                wildcard_subscription_available: j,
                subscription_identifiers_available: k,
                shared_subscription_available: l,
                server_keep_alive: m,
                response_information: n,
                server_reference: o,
                authentication_method: p,
                authentication_data: q,
            }
        });
    let reasons: Vec<u8> = if v5 {
        vec![
            0x00, 0x80, 0x81, 0x82, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x9F,
        ]
    } else {
        // The 3.1.1 codes as v5 codes (what decoding a 3.1.1 CONNACK yields).
        vec![0x00, 0x84, 0x85, 0x88, 0x86, 0x87]
    };
    (any::<bool>(), prop::sample::select(reasons), props).prop_map(
        move |(session_present, reason, properties)| ConnAck {
            session_present: session_present && reason == 0,
            reason,
            properties: if v5 { properties } else { Default::default() },
        },
    )
}

fn disconnect() -> impl Strategy<Value = Disconnect> {
    (
        prop::sample::select(vec![0x00u8, 0x04, 0x80, 0x81, 0x8E, 0x93, 0x9C, 0xA2]),
        option::of(any::<u32>()),
        option::of(string()),
        users(),
        option::of(string()),
    )
        .prop_map(|(reason, sei, rs, user_properties, sr)| Disconnect {
            reason,
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties,
            server_reference: sr,
        })
}

fn auth() -> impl Strategy<Value = Auth> {
    (
        prop::sample::select(vec![0x00u8, 0x18, 0x19]),
        option::of(string()),
        option::of(bin()),
        option::of(string()),
        users(),
    )
        .prop_map(|(reason, m, d, rs, user_properties)| Auth {
            reason,
            authentication_method: m,
            authentication_data: d,
            reason_string: rs,
            user_properties,
        })
}

/// Encodes, then decodes with a server codec (after a CONNECT) or a client codec.
fn server_roundtrip(version: ProtocolVersion, packet: &Packet) -> Packet {
    let bytes = encode(version, packet);
    decode_after_connect(version, &bytes).expect("decodes")
}

fn client_roundtrip(version: ProtocolVersion, packet: &Packet) -> Packet {
    let bytes = encode(version, packet);
    decode_one(&mut Codec::new_client(version, MAX), &bytes).expect("decodes")
}

fn server_packet(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v == ProtocolVersion::V5;
    prop_oneof![
        publish(v, true).prop_map(Packet::Publish),
        connack(v).prop_map(Packet::ConnAck),
        (
            1u16..,
            vec(
                prop::sample::select(vec![0u8, 1, 2, 0x80, 0x87, 0x8F, 0x9E, 0xA2]),
                1..4
            ),
            ack_properties(v5)
        )
            .prop_map(
                move |(packet_id, reasons, properties)| Packet::SubAck(SubAck {
                    packet_id,
                    reasons: if v5 {
                        reasons
                    } else {
                        reasons.into_iter().map(|r| r.min(0x80)).collect()
                    },
                    properties,
                })
            ),
        (
            1u16..,
            vec(prop::sample::select(vec![0u8, 0x11, 0x80, 0x87]), 1..4),
            ack_properties(v5)
        )
            .prop_map(
                move |(packet_id, reasons, properties)| Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reasons: if v5 { reasons } else { vec![] },
                    properties,
                })
            ),
        Just(Packet::PingResp),
    ]
}

fn client_packet(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v == ProtocolVersion::V5;
    prop_oneof![
        publish(v, false).prop_map(Packet::Publish),
        subscribe(v).prop_map(Packet::Subscribe),
        unsubscribe(v).prop_map(Packet::Unsubscribe),
        client_ack(v),
        Just(Packet::PingReq),
        disconnect().prop_map(move |d| Packet::Disconnect(if v5 {
            d
        } else {
            Disconnect::default()
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn publish_roundtrips_both_versions(v in version(), p in version().prop_flat_map(|v| publish(v, false))) {
        // Strip v5 fields when encoding as 3.1.1: they are dropped on the wire.
        let p = if v == ProtocolVersion::V311 { Publish { properties: Default::default(), ..p } } else { p };
        let packet = Packet::Publish(p);
        prop_assert_eq!(server_roundtrip(v, &packet), packet.clone());
        prop_assert_eq!(client_roundtrip(v, &packet), packet);
    }

    #[test]
    fn client_packets_roundtrip(p in version().prop_flat_map(|v| (Just(v), client_packet(v)))) {
        let (v, packet) = p;
        prop_assert_eq!(server_roundtrip(v, &packet), packet);
    }

    #[test]
    fn server_packets_roundtrip(p in version().prop_flat_map(|v| (Just(v), server_packet(v)))) {
        let (v, packet) = p;
        prop_assert_eq!(client_roundtrip(v, &packet), packet);
    }

    #[test]
    fn connect_roundtrips(c in version().prop_flat_map(connect)) {
        let v = c.protocol;
        let packet = Packet::Connect(c);
        let bytes = encode(v, &packet);
        let mut codec = Codec::new(MAX);
        prop_assert_eq!(decode_one(&mut codec, &bytes).expect("decodes"), packet);
        prop_assert_eq!(codec.version(), Some(v));
    }

    #[test]
    fn v5_disconnect_and_auth_roundtrip_both_directions(d in disconnect(), a in auth()) {
        for packet in [Packet::Disconnect(d.clone()), Packet::Auth(a.clone())] {
            prop_assert_eq!(server_roundtrip(ProtocolVersion::V5, &packet), packet.clone());
            prop_assert_eq!(client_roundtrip(ProtocolVersion::V5, &packet), packet);
        }
    }

    #[test]
    fn v5_publish_agrees_with_mqttbytes_writer(p in publish(ProtocolVersion::V5, true)) {
        // mqttbytes writes the same packet with its own property order; both decode alike.
        let mb = mqttbytes::v5::Publish {
            dup: p.dup,
            qos: match p.qos {
                QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
                QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
                QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
            },
            retain: p.retain,
            topic: p.topic.clone(),
            pkid: p.packet_id,
            payload: p.payload.clone(),
            properties: Some(mqttbytes::v5::PublishProperties {
                payload_format_indicator: p.properties.payload_format_indicator,
                message_expiry_interval: p.properties.message_expiry_interval,
                topic_alias: p.properties.topic_alias,
                response_topic: p.properties.response_topic.clone(),
                correlation_data: p.properties.correlation_data.clone(),
                user_properties: p.properties.user_properties.clone(),
                subscription_identifiers: p.properties.subscription_identifiers.iter().map(|&i| i as usize).collect(),
                content_type: p.properties.content_type.clone(),
            }),
        };
        let mut theirs = BytesMut::new();
        mb.write(&mut theirs).unwrap();
        let ours = encode(ProtocolVersion::V5, &Packet::Publish(p.clone()));
        prop_assert_eq!(theirs.len(), ours.len());
        let mut client = Codec::new_client(ProtocolVersion::V5, MAX);
        prop_assert_eq!(decode_one(&mut client, &theirs).unwrap(), Packet::Publish(p));
    }

    #[test]
    fn arbitrary_bytes_never_panic(v in version(), bytes in vec(any::<u8>(), 0..512)) {
        // Fresh (expects CONNECT), connected, and client codecs.
        for mut codec in [Codec::new(4096), connected(v), Codec::new_client(v, 4096)] {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }

    #[test]
    fn arbitrary_bodies_after_a_valid_header_never_panic(
        v in version(),
        byte1 in any::<u8>(),
        body in vec(any::<u8>(), 0..100),
    ) {
        // Random bytes behind a consistent fixed header reach every body decoder.
        let mut bytes = vec![byte1, body.len() as u8];
        bytes.extend_from_slice(&body);
        for mut codec in [connected(v), Codec::new_client(v, 4096)] {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = codec.decode(&mut buf);
        }
    }

    #[test]
    fn chunked_decode_equals_whole_decode(
        v in version(),
        packets in version().prop_flat_map(|v| vec(client_packet(v), 1..6).prop_map(move |p| (v, p))),
        cuts in vec(0usize..1000, 0..8),
    ) {
        let _ = v;
        let (v, packets) = packets;
        let mut bytes = connect_bytes(v);
        for p in &packets {
            bytes.extend_from_slice(&encode(v, p));
        }
        // Cut points anywhere in the stream.
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(p - last);
            last = p;
        }
        chunks.push(bytes.len() - last);
        let whole = super::limits::decode_stream(&bytes, &[bytes.len()]);
        let chunked = super::limits::decode_stream(&bytes, &chunks);
        prop_assert_eq!(&chunked, &whole);
        prop_assert_eq!(&whole[1..], &packets[..]);
    }
}
