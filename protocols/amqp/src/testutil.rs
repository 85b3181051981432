//! Proptest strategies shared by the unit tests and the generated `method::arb`.

use bytes::Bytes;
use proptest::prelude::*;

use crate::properties::{BasicProperties, ContentHeader};
use crate::table::{FieldTable, FieldValue};

/// A short string: ASCII up to the 255-byte limit, or any chars up to 63 (≤ 252 bytes).
pub(crate) fn arb_shortstr() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._/-]{0,255}", "\\PC{0,63}"]
}

/// A long string of arbitrary bytes.
pub(crate) fn arb_longstr() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Any scalar field value (NaN floats excluded: they are not equal to themselves).
fn arb_scalar() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Boolean),
        any::<i8>().prop_map(FieldValue::ShortShortInt),
        any::<u8>().prop_map(FieldValue::ShortShortUInt),
        any::<i16>().prop_map(FieldValue::ShortInt),
        any::<u16>().prop_map(FieldValue::ShortUInt),
        any::<i32>().prop_map(FieldValue::LongInt),
        any::<u32>().prop_map(FieldValue::LongUInt),
        any::<i64>().prop_map(FieldValue::LongLongInt),
        any::<f32>()
            .prop_filter("NaN", |f| !f.is_nan())
            .prop_map(FieldValue::Float),
        any::<f64>()
            .prop_filter("NaN", |f| !f.is_nan())
            .prop_map(FieldValue::Double),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        arb_longstr().prop_map(FieldValue::LongString),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        arb_longstr().prop_map(FieldValue::ByteArray),
    ]
}

/// Any field value, tables and arrays nested a few levels.
pub(crate) fn arb_field_value() -> impl Strategy<Value = FieldValue> {
    arb_scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::FieldArray),
            proptest::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|e| FieldValue::FieldTable(FieldTable(e))),
        ]
    })
}

/// A table key (short string; duplicates allowed, as on the wire).
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z-]{0,12}", "\\PC{0,20}"]
}

/// Any field table, possibly nested.
pub(crate) fn arb_table() -> impl Strategy<Value = FieldTable> {
    proptest::collection::vec((arb_key(), arb_field_value()), 0..6).prop_map(FieldTable)
}

/// Any basic properties, each one present or not.
pub(crate) fn arb_properties() -> impl Strategy<Value = BasicProperties> {
    let s = || proptest::option::of(arb_shortstr());
    (
        (s(), s(), proptest::option::of(arb_table())),
        (any::<Option<u8>>(), any::<Option<u8>>(), s(), s(), s(), s()),
        (any::<Option<u64>>(), s(), s(), s(), s()),
    )
        .prop_map(
            |(
                (content_type, content_encoding, headers),
                (delivery_mode, priority, correlation_id, reply_to, expiration, message_id),
                (timestamp, kind, user_id, app_id, cluster_id),
            )| BasicProperties {
                content_type,
                content_encoding,
                headers,
                delivery_mode,
                priority,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                timestamp,
                kind,
                user_id,
                app_id,
                cluster_id,
            },
        )
}

/// Any content header.
pub(crate) fn arb_header() -> impl Strategy<Value = ContentHeader> {
    (any::<u16>(), any::<u16>(), any::<u64>(), arb_properties()).prop_map(
        |(class_id, weight, body_size, properties)| ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        },
    )
}
