//! Golden bytes (built independently of this crate's encoders) decode to the expected
//! values and re-encode to the same bytes.

use bytes::{Bytes, BytesMut};

use super::decode_all;
use crate::constants::{FRAME_END, FRAME_MIN_SIZE};
use crate::frame::{
    decode_frame, encode_body_frames, encode_header_frame, encode_heartbeat_frame,
    encode_method_frame, encode_raw_header_frame, Frame,
};
use crate::method::{
    encode_basic_deliver_frame, encode_basic_publish_frame, BasicDeliver, BasicPublish,
    ConnectionStart, Method, QueueDeclare,
};
use crate::properties::{BasicProperties, ContentHeader};
use crate::table::{FieldTable, FieldValue};

/// connection.start as RabbitMQ 3.13 sends it (capabilities, cluster name, versions).
const CONNECTION_START: &[u8] = b"\
\x01\x00\x00\x00\x00\x01\xfa\x00\x0a\x00\x0a\x00\x09\x00\x00\x01\
\xd5\x0c\x63\x61\x70\x61\x62\x69\x6c\x69\x74\x69\x65\x73\x46\x00\
\x00\x00\xc7\x12\x70\x75\x62\x6c\x69\x73\x68\x65\x72\x5f\x63\x6f\
\x6e\x66\x69\x72\x6d\x73\x74\x01\x1a\x65\x78\x63\x68\x61\x6e\x67\
\x65\x5f\x65\x78\x63\x68\x61\x6e\x67\x65\x5f\x62\x69\x6e\x64\x69\
\x6e\x67\x73\x74\x01\x0a\x62\x61\x73\x69\x63\x2e\x6e\x61\x63\x6b\
\x74\x01\x16\x63\x6f\x6e\x73\x75\x6d\x65\x72\x5f\x63\x61\x6e\x63\
\x65\x6c\x5f\x6e\x6f\x74\x69\x66\x79\x74\x01\x12\x63\x6f\x6e\x6e\
\x65\x63\x74\x69\x6f\x6e\x2e\x62\x6c\x6f\x63\x6b\x65\x64\x74\x01\
\x13\x63\x6f\x6e\x73\x75\x6d\x65\x72\x5f\x70\x72\x69\x6f\x72\x69\
\x74\x69\x65\x73\x74\x01\x1c\x61\x75\x74\x68\x65\x6e\x74\x69\x63\
\x61\x74\x69\x6f\x6e\x5f\x66\x61\x69\x6c\x75\x72\x65\x5f\x63\x6c\
\x6f\x73\x65\x74\x01\x10\x70\x65\x72\x5f\x63\x6f\x6e\x73\x75\x6d\
\x65\x72\x5f\x71\x6f\x73\x74\x01\x0f\x64\x69\x72\x65\x63\x74\x5f\
\x72\x65\x70\x6c\x79\x5f\x74\x6f\x74\x01\x0c\x63\x6c\x75\x73\x74\
\x65\x72\x5f\x6e\x61\x6d\x65\x53\x00\x00\x00\x0e\x72\x61\x62\x62\
\x69\x74\x40\x6d\x79\x2d\x68\x6f\x73\x74\x09\x63\x6f\x70\x79\x72\
\x69\x67\x68\x74\x53\x00\x00\x00\x3c\x43\x6f\x70\x79\x72\x69\x67\
\x68\x74\x20\x28\x63\x29\x20\x32\x30\x30\x37\x2d\x32\x30\x32\x34\
\x20\x42\x72\x6f\x61\x64\x63\x6f\x6d\x20\x49\x6e\x63\x20\x61\x6e\
\x64\x2f\x6f\x72\x20\x69\x74\x73\x20\x73\x75\x62\x73\x69\x64\x69\
\x61\x72\x69\x65\x73\x0b\x69\x6e\x66\x6f\x72\x6d\x61\x74\x69\x6f\
\x6e\x53\x00\x00\x00\x39\x4c\x69\x63\x65\x6e\x73\x65\x64\x20\x75\
\x6e\x64\x65\x72\x20\x74\x68\x65\x20\x4d\x50\x4c\x20\x32\x2e\x30\
\x2e\x20\x57\x65\x62\x73\x69\x74\x65\x3a\x20\x68\x74\x74\x70\x73\
\x3a\x2f\x2f\x72\x61\x62\x62\x69\x74\x6d\x71\x2e\x63\x6f\x6d\x08\
\x70\x6c\x61\x74\x66\x6f\x72\x6d\x53\x00\x00\x00\x11\x45\x72\x6c\
\x61\x6e\x67\x2f\x4f\x54\x50\x20\x32\x36\x2e\x32\x2e\x35\x07\x70\
\x72\x6f\x64\x75\x63\x74\x53\x00\x00\x00\x08\x52\x61\x62\x62\x69\
\x74\x4d\x51\x07\x76\x65\x72\x73\x69\x6f\x6e\x53\x00\x00\x00\x06\
\x33\x2e\x31\x33\x2e\x37\x00\x00\x00\x0e\x41\x4d\x51\x50\x4c\x41\
\x49\x4e\x20\x50\x4c\x41\x49\x4e\x00\x00\x00\x05\x65\x6e\x5f\x55\
\x53\xce";

/// basic.publish to "" / "hello", a header (content-type text/plain, delivery-mode 2,
/// body size 11) and one body frame, all on channel 1, as pika writes them.
const PUBLISH: &[u8] = b"\
\x01\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x28\x00\x00\x00\x05hello\x00\xce\
\x02\x00\x01\x00\x00\x00\x1a\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0b\
\x90\x00\x0atext/plain\x02\xce\
\x03\x00\x01\x00\x00\x00\x0bhello world\xce";

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

#[test]
fn connection_start_as_rabbitmq_sends_it() {
    let frames = decode_all(CONNECTION_START);
    let [Frame::Method {
        channel: 0,
        method: Method::ConnectionStart(start),
    }] = frames.as_slice()
    else {
        panic!("unexpected frames {frames:?}");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(start.mechanisms, Bytes::from_static(b"AMQPLAIN PLAIN"));
    assert_eq!(start.locales, Bytes::from_static(b"en_US"));
    let props = &start.server_properties;
    assert_eq!(props.len(), 7);
    assert_eq!(
        props.get("product"),
        Some(&FieldValue::LongString(Bytes::from_static(b"RabbitMQ")))
    );
    let Some(FieldValue::FieldTable(caps)) = props.get("capabilities") else {
        panic!("no capabilities");
    };
    assert_eq!(caps.len(), 9);
    assert_eq!(caps.get("basic.nack"), Some(&FieldValue::Boolean(true)));
    // Re-encoding gives the same bytes, both via Frame and via Method.
    assert_eq!(encode(&frames[0]), CONNECTION_START);
    let mut out = BytesMut::new();
    encode_method_frame(0, &Method::ConnectionStart(start.clone()), &mut out);
    assert_eq!(&out[..], CONNECTION_START);
}

#[test]
fn publish_header_body() {
    let frames = decode_all(PUBLISH);
    assert_eq!(frames.len(), 3);
    assert_eq!(
        frames[0],
        Frame::Method {
            channel: 1,
            method: Method::BasicPublish(BasicPublish {
                ticket: 0,
                exchange: String::new(),
                routing_key: "hello".into(),
                mandatory: false,
                immediate: false,
            }),
        }
    );
    let header = ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: 11,
        properties: BasicProperties {
            content_type: Some("text/plain".into()),
            delivery_mode: Some(2),
            ..Default::default()
        },
    };
    let Frame::Header {
        channel: 1,
        header: got,
        raw,
    } = &frames[1]
    else {
        panic!("not a header: {:?}", frames[1]);
    };
    assert_eq!(**got, header);
    assert_eq!(&raw[..], &PUBLISH[22 + 7..22 + 7 + 26]);
    assert_eq!(
        frames[2],
        Frame::Body {
            channel: 1,
            payload: Bytes::from_static(b"hello world"),
        }
    );
    let all: Vec<u8> = frames.iter().flat_map(encode).collect();
    assert_eq!(all, PUBLISH);

    // The hot-path publish encoder and the header encoders agree byte for byte.
    let mut out = BytesMut::new();
    encode_basic_publish_frame(1, "", "hello", false, false, &mut out);
    encode_header_frame(1, &header, &mut out);
    encode_body_frames(1, b"hello world", 131_072, &mut out);
    assert_eq!(&out[..], PUBLISH);
    let mut out = BytesMut::new();
    encode_raw_header_frame(1, raw, &mut out);
    assert_eq!(&out[..], &PUBLISH[22..22 + 34]);
}

#[test]
fn header_frame_encodes_from_header_when_raw_is_empty() {
    let frames = decode_all(PUBLISH);
    let Frame::Header {
        channel, header, ..
    } = frames[1].clone()
    else {
        panic!()
    };
    let rebuilt = Frame::Header {
        channel,
        header,
        raw: Bytes::new(),
    };
    assert_eq!(encode(&rebuilt), &PUBLISH[22..22 + 34]);
}

#[test]
fn queue_declare_bit_packing() {
    // passive=false, durable=true, exclusive=false, auto_delete=true, no_wait=false
    let bytes =
        b"\x01\x00\x01\x00\x00\x00\x0e\x00\x32\x00\x0a\x00\x00\x02q1\x0a\x00\x00\x00\x00\xce";
    let expected = Method::QueueDeclare(QueueDeclare {
        ticket: 0,
        queue: "q1".into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        nowait: false,
        arguments: FieldTable::new(),
    });
    let frames = decode_all(bytes);
    assert_eq!(
        frames,
        vec![Frame::Method {
            channel: 1,
            method: expected.clone()
        }]
    );
    let mut out = BytesMut::new();
    encode_method_frame(1, &expected, &mut out);
    assert_eq!(&out[..], bytes);
}

#[test]
fn bits_ignore_unused_high_bits() {
    // basic.ack delivery-tag 7, multiple=true, plus garbage in the unused bits.
    let mut payload = BytesMut::from(&b"\x00\x3c\x00\x50\x00\x00\x00\x00\x00\x00\x00\x07\xfd"[..]);
    let m = Method::decode(payload.split().freeze()).unwrap();
    assert_eq!(m.name(), "basic.ack");
    let Method::BasicAck(ack) = m else { panic!() };
    assert_eq!((ack.delivery_tag, ack.multiple), (7, true));
}

#[test]
fn deliver_hot_path_matches_method_encoder() {
    for (ctag, tag, redelivered, ex, rk) in [
        ("amq.ctag-abc", 1u64, false, "", "q"),
        ("", u64::MAX, true, "amq.topic", "a.b.c"),
        ("é", 42, true, "x", ""),
    ] {
        let mut hot = BytesMut::new();
        encode_basic_deliver_frame(7, ctag, tag, redelivered, ex, rk, &mut hot);
        let mut slow = BytesMut::new();
        let m = Method::BasicDeliver(BasicDeliver {
            consumer_tag: ctag.into(),
            delivery_tag: tag,
            redelivered,
            exchange: ex.into(),
            routing_key: rk.into(),
        });
        encode_method_frame(7, &m, &mut slow);
        assert_eq!(hot, slow);
        assert_eq!(
            decode_all(&hot),
            vec![Frame::Method {
                channel: 7,
                method: m
            }]
        );
    }
    let mut hot = BytesMut::new();
    encode_basic_publish_frame(3, "ex", "rk", true, true, &mut hot);
    let mut slow = BytesMut::new();
    let m = Method::BasicPublish(BasicPublish {
        ticket: 0,
        exchange: "ex".into(),
        routing_key: "rk".into(),
        mandatory: true,
        immediate: true,
    });
    encode_method_frame(3, &m, &mut slow);
    assert_eq!(hot, slow);
}

#[test]
fn body_split_at_frame_max() {
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut out = BytesMut::new();
    encode_body_frames(5, &body, FRAME_MIN_SIZE, &mut out);
    let frames = decode_all(&out);
    let sizes: Vec<usize> = frames
        .iter()
        .map(|f| match f {
            Frame::Body {
                channel: 5,
                payload,
            } => payload.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![4088, 4088, 1824]);
    let joined: Vec<u8> = frames
        .iter()
        .flat_map(|f| match f {
            Frame::Body { payload, .. } => payload.to_vec(),
            _ => vec![],
        })
        .collect();
    assert_eq!(joined, body);
    // Every frame fits frame_max, so a decoder with that limit accepts them all.
    let mut buf = out.clone();
    while let Some(_f) = decode_frame(&mut buf, FRAME_MIN_SIZE).unwrap() {}
    assert!(buf.is_empty());

    // Exact multiple: no empty trailing frame.
    let mut out = BytesMut::new();
    encode_body_frames(5, &body[..4088 * 2], FRAME_MIN_SIZE, &mut out);
    assert_eq!(decode_all(&out).len(), 2);
    // Empty body: no frame at all.
    let mut out = BytesMut::new();
    encode_body_frames(5, b"", FRAME_MIN_SIZE, &mut out);
    assert!(out.is_empty());
    // No limit: one frame.
    encode_body_frames(5, &body, 0, &mut out);
    assert_eq!(decode_all(&out).len(), 1);
}

#[test]
fn heartbeat_bytes() {
    let mut out = BytesMut::new();
    encode_heartbeat_frame(&mut out);
    assert_eq!(&out[..], &[8, 0, 0, 0, 0, 0, 0, FRAME_END]);
    assert_eq!(decode_all(&out), vec![Frame::Heartbeat { channel: 0 }]);
    assert_eq!(decode_all(&out)[0].channel(), 0);
}

#[test]
fn every_prefix_is_incomplete_and_untouched() {
    let mut stream = Vec::new();
    stream.extend_from_slice(CONNECTION_START);
    stream.extend_from_slice(PUBLISH);
    stream.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, FRAME_END]);
    let mut start = 0;
    while start < stream.len() {
        let rest = &stream[start..];
        let mut whole = BytesMut::from(rest);
        decode_frame(&mut whole, 131_072).unwrap().unwrap();
        let frame_len = rest.len() - whole.len();
        for len in 0..frame_len {
            let mut buf = BytesMut::from(&rest[..len]);
            assert_eq!(decode_frame(&mut buf, 131_072), Ok(None), "prefix {len}");
            assert_eq!(&buf[..], &rest[..len]);
        }
        start += frame_len;
    }
}

#[test]
fn method_metadata() {
    let publish = Method::BasicPublish(BasicPublish::default());
    assert_eq!((publish.class_id(), publish.method_id()), (60, 40));
    assert_eq!(publish.name(), "basic.publish");
    assert!(publish.has_content() && !publish.is_synchronous());
    let m = Method::from(ConnectionStart::default());
    assert_eq!(m.name(), "connection.start");
    assert!(m.is_synchronous() && !m.has_content());
    assert_eq!(
        Method::ConnectionUpdateSecretOk(crate::method::ConnectionUpdateSecretOk).name(),
        "connection.update_secret_ok"
    );
    let all = crate::method::all_default_methods();
    assert_eq!(all.len(), 66);
    let content: Vec<_> = all
        .iter()
        .filter(|m| m.has_content())
        .map(Method::name)
        .collect();
    assert_eq!(
        content,
        [
            "basic.publish",
            "basic.return",
            "basic.deliver",
            "basic.get_ok"
        ]
    );
    let mut ids: Vec<_> = all.iter().map(|m| (m.class_id(), m.method_id())).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 66, "class/method ids are unique");
}

#[test]
fn every_default_method_round_trips() {
    for m in crate::method::all_default_methods() {
        let mut out = BytesMut::new();
        encode_method_frame(9, &m, &mut out);
        assert_eq!(
            decode_all(&out),
            vec![Frame::Method {
                channel: 9,
                method: m.clone()
            }],
            "{}",
            m.name()
        );
    }
}

#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "shortstr longer than 255"))]
fn long_shortstr_is_clamped_in_release() {
    let long = "é".repeat(200); // 400 bytes
    let mut out = BytesMut::new();
    encode_basic_publish_frame(1, "", &long, false, false, &mut out);
    let frames = decode_all(&out);
    let Frame::Method {
        method: Method::BasicPublish(p),
        ..
    } = &frames[0]
    else {
        panic!()
    };
    // Clamped at a char boundary: 127 two-byte chars = 254 bytes.
    assert_eq!(p.routing_key, "é".repeat(127));
}
