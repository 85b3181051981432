//! Field values of every type and all 14 basic properties, against literal bytes.

use bytes::{Bytes, BytesMut};

use crate::properties::{BasicProperties, ContentHeader};
use crate::table::{FieldTable, FieldValue};

fn enc_value(v: &FieldValue) -> Vec<u8> {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    out.to_vec()
}

#[test]
fn every_field_value_type() {
    let cases: Vec<(FieldValue, &[u8])> = vec![
        (FieldValue::Boolean(true), b"t\x01"),
        (FieldValue::Boolean(false), b"t\x00"),
        (FieldValue::ShortShortInt(-2), b"b\xfe"),
        (FieldValue::ShortShortUInt(200), b"B\xc8"),
        (FieldValue::ShortInt(-2), b"s\xff\xfe"),
        (FieldValue::ShortUInt(65_000), b"u\xfd\xe8"),
        (FieldValue::LongInt(-2), b"I\xff\xff\xff\xfe"),
        (FieldValue::LongUInt(0xDEAD_BEEF), b"i\xde\xad\xbe\xef"),
        (
            FieldValue::LongLongInt(-2),
            b"l\xff\xff\xff\xff\xff\xff\xff\xfe",
        ),
        (FieldValue::Float(1.5), b"f\x3f\xc0\x00\x00"),
        (
            FieldValue::Double(-0.5),
            b"d\xbf\xe0\x00\x00\x00\x00\x00\x00",
        ),
        (
            FieldValue::Decimal {
                scale: 2,
                value: 12345,
            },
            b"D\x02\x00\x00\x30\x39",
        ),
        (
            FieldValue::LongString(Bytes::from_static(b"hi")),
            b"S\x00\x00\x00\x02hi",
        ),
        (
            FieldValue::FieldArray(vec![FieldValue::Void, FieldValue::ShortShortUInt(1)]),
            b"A\x00\x00\x00\x03VB\x01",
        ),
        (
            FieldValue::Timestamp(1_700_000_000),
            b"T\x00\x00\x00\x00\x65\x53\xf1\x00",
        ),
        (
            FieldValue::FieldTable(FieldTable(vec![("a".into(), FieldValue::Void)])),
            b"F\x00\x00\x00\x03\x01aV",
        ),
        (FieldValue::Void, b"V"),
        (
            FieldValue::ByteArray(Bytes::from_static(b"\x00\xff")),
            b"x\x00\x00\x00\x02\x00\xff",
        ),
    ];
    for (value, bytes) in cases {
        assert_eq!(enc_value(&value), bytes, "{value:?}");
        let mut buf = Bytes::copy_from_slice(bytes);
        assert_eq!(FieldValue::decode(&mut buf).unwrap(), value);
        assert!(buf.is_empty());
    }
    // Any non-zero octet is true, as RabbitMQ reads it.
    let mut buf = Bytes::from_static(b"t\x07");
    assert_eq!(FieldValue::decode(&mut buf), Ok(FieldValue::Boolean(true)));
}

#[test]
fn long_strings_are_zero_copy() {
    let input = Bytes::from(b"\x00\x00\x00\x09\x01kS\x00\x00\x00\x02hi".to_vec());
    let mut buf = input.clone();
    let table = FieldTable::decode(&mut buf).unwrap();
    let Some(FieldValue::LongString(s)) = table.get("k") else {
        panic!()
    };
    assert_eq!(s.as_ptr(), input[11..].as_ptr());
}

#[test]
fn table_api() {
    let mut t = FieldTable::new();
    assert!(t.is_empty());
    t.insert("x-max-priority", FieldValue::ShortShortUInt(10));
    t.insert(
        "x-queue-type",
        FieldValue::LongString(Bytes::from_static(b"classic")),
    );
    t.insert("x-max-priority", FieldValue::LongInt(5));
    assert_eq!(t.len(), 2);
    assert_eq!(t.get("x-max-priority"), Some(&FieldValue::LongInt(5)));
    assert_eq!(
        t.iter().next().map(|(k, _)| k.as_str()),
        Some("x-max-priority")
    );
    assert_eq!(t.get("nope"), None);
    let mut out = BytesMut::new();
    t.encode(&mut out);
    let mut buf = out.freeze();
    assert_eq!(FieldTable::decode(&mut buf), Ok(t));
}

#[test]
fn all_fourteen_properties() {
    let props = BasicProperties {
        content_type: Some("application/json".into()),
        content_encoding: Some("gzip".into()),
        headers: Some(FieldTable(vec![("h".into(), FieldValue::LongInt(1))])),
        delivery_mode: Some(2),
        priority: Some(9),
        correlation_id: Some("corr".into()),
        reply_to: Some("amq.rabbitmq.reply-to".into()),
        expiration: Some("60000".into()),
        message_id: Some("mid".into()),
        timestamp: Some(1_700_000_000),
        kind: Some("type".into()),
        user_id: Some("guest".into()),
        app_id: Some("app".into()),
        cluster_id: Some("cl".into()),
    };
    assert_eq!(props.flags(), 0xFFFC);
    let mut expected: Vec<u8> = vec![0xFF, 0xFC];
    expected.extend_from_slice(b"\x10application/json\x04gzip");
    expected.extend_from_slice(b"\x00\x00\x00\x07\x01hI\x00\x00\x00\x01");
    expected.extend_from_slice(b"\x02\x09\x04corr\x15amq.rabbitmq.reply-to\x0560000\x03mid");
    expected.extend_from_slice(b"\x00\x00\x00\x00\x65\x53\xf1\x00");
    expected.extend_from_slice(b"\x04type\x05guest\x03app\x02cl");
    let mut out = BytesMut::new();
    props.encode(&mut out);
    assert_eq!(out.to_vec(), expected);
    let mut buf = out.freeze();
    assert_eq!(BasicProperties::decode(&mut buf), Ok(props.clone()));
    assert!(buf.is_empty());

    // Each property alone sets exactly its own flag bit (15 down to 2).
    let singles: Vec<BasicProperties> = vec![
        BasicProperties {
            content_type: props.content_type.clone(),
            ..Default::default()
        },
        BasicProperties {
            content_encoding: props.content_encoding.clone(),
            ..Default::default()
        },
        BasicProperties {
            headers: props.headers.clone(),
            ..Default::default()
        },
        BasicProperties {
            delivery_mode: props.delivery_mode,
            ..Default::default()
        },
        BasicProperties {
            priority: props.priority,
            ..Default::default()
        },
        BasicProperties {
            correlation_id: props.correlation_id.clone(),
            ..Default::default()
        },
        BasicProperties {
            reply_to: props.reply_to.clone(),
            ..Default::default()
        },
        BasicProperties {
            expiration: props.expiration.clone(),
            ..Default::default()
        },
        BasicProperties {
            message_id: props.message_id.clone(),
            ..Default::default()
        },
        BasicProperties {
            timestamp: props.timestamp,
            ..Default::default()
        },
        BasicProperties {
            kind: props.kind.clone(),
            ..Default::default()
        },
        BasicProperties {
            user_id: props.user_id.clone(),
            ..Default::default()
        },
        BasicProperties {
            app_id: props.app_id.clone(),
            ..Default::default()
        },
        BasicProperties {
            cluster_id: props.cluster_id.clone(),
            ..Default::default()
        },
    ];
    for (i, p) in singles.iter().enumerate() {
        assert_eq!(p.flags(), 1 << (15 - i), "property {i}");
        let mut out = BytesMut::new();
        p.encode(&mut out);
        assert_eq!(BasicProperties::decode(&mut out.freeze()).as_ref(), Ok(p));
    }
}

#[test]
fn property_flag_low_bits_are_ignored() {
    // Bits 1 and 0 set, nothing else: no properties, as RabbitMQ reads it.
    let mut buf = Bytes::from_static(&[0x00, 0x03]);
    assert_eq!(
        BasicProperties::decode(&mut buf),
        Ok(BasicProperties::default())
    );
}

#[test]
fn content_header_decode() {
    let payload =
        Bytes::from_static(b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x10\x00\x02");
    let h = ContentHeader::decode(payload).unwrap();
    assert_eq!((h.class_id, h.body_size), (60, 256));
    assert_eq!(h.properties.delivery_mode, Some(2));
    assert_eq!(h.properties.flags(), 0x1000);
}
