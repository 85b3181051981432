//! Translation between MQTT and the core, by RabbitMQ's rules: topics ↔ routing
//! keys (`/` ↔ `.`, `+` ↔ `*`, `#` unchanged) and PUBLISH properties ↔ message properties.

use std::time::{Duration, Instant};

use bytes::Bytes;
use warren_mqtt::{PublishProperties, QoS};

use crate::core::{Message, Properties, Table, Value};

/// Header carrying the QoS a message was published with (as RabbitMQ names it).
pub(crate) const QOS_HEADER: &str = "x-mqtt-publish-qos";
/// Header carrying an MQTT 5 Response Topic.
pub(crate) const REPLY_TO_TOPIC_HEADER: &str = "x-reply-to-topic";
/// Header carrying Correlation Data that is not a valid AMQP short string.
pub(crate) const CORRELATION_HEADER: &str = "x-correlation-id";
/// Header carrying the MQTT 5 Payload Format Indicator.
pub(crate) const PAYLOAD_FORMAT_HEADER: &str = "x-mqtt-payload-format-indicator";
/// Header marking a message published with RETAIN set, so subscriptions with Retain As
/// Published can forward the flag (set only when true, so other messages carry nothing).
pub(crate) const RETAIN_HEADER: &str = "x-mqtt-retain";

/// `sensors/+/temp` → `sensors.*.temp`.
/// Generic over the string type: messages take an inline [`crate::core::ShortString`], so the
/// usual topics cost no allocation.
pub(crate) fn topic_to_routing_key<S: FromIterator<char>>(topic: &str) -> S {
    topic
        .chars()
        .map(|c| match c {
            '/' => '.',
            '+' => '*',
            other => other,
        })
        .collect()
}

/// `cmd.device42` → `cmd/device42`.
/// Generic over the string type, as [`topic_to_routing_key`].
pub(crate) fn routing_key_to_topic<S: FromIterator<char>>(key: &str) -> S {
    key.chars()
        .map(|c| match c {
            '.' => '/',
            '*' => '+',
            other => other,
        })
        .collect()
}

/// Builds the core message for an MQTT PUBLISH (or will) on `exchange`.
pub(crate) fn message_from_publish(
    exchange: &str,
    topic: &str,
    qos: QoS,
    payload: Bytes,
    properties: &PublishProperties,
) -> Message {
    let mut headers = Table::default();
    headers.insert(QOS_HEADER, Value::U8(qos.as_u8()));
    for (key, value) in &properties.user_properties {
        headers
            .0
            .push((key.clone(), Value::String(Bytes::from(value.clone()))));
    }
    let mut correlation_id = None;
    if let Some(data) = &properties.correlation_data {
        match std::str::from_utf8(data) {
            Ok(text) if text.len() <= 255 => correlation_id = Some(text.to_string()),
            _ => headers.insert(CORRELATION_HEADER, Value::ByteArray(data.clone())),
        }
    }
    if let Some(response_topic) = &properties.response_topic {
        // Stored in AMQP form, as RabbitMQ does, so AMQP clients can publish replies to it.
        headers.insert(
            REPLY_TO_TOPIC_HEADER,
            Value::String(Bytes::from(topic_to_routing_key::<String>(response_topic))),
        );
    }
    if let Some(indicator) = properties.payload_format_indicator {
        headers.insert(PAYLOAD_FORMAT_HEADER, Value::U8(indicator));
    }
    Message {
        exchange: exchange.into(),
        routing_key: topic_to_routing_key(topic),
        properties: Properties {
            content_type: properties.content_type.clone(),
            headers: Some(headers),
            delivery_mode: Some(if qos == QoS::AtMostOnce { 1 } else { 2 }),
            correlation_id,
            expiration: properties
                .message_expiry_interval
                .map(|seconds| (u64::from(seconds) * 1000).to_string()),
            ..Properties::default()
        },
        body: payload,
        wire_cache: None,
        origin: None,
    }
}

/// Records that `message` was published with RETAIN set (see [`RETAIN_HEADER`]).
pub(crate) fn mark_retained(message: &mut Message) {
    message
        .properties
        .headers
        .get_or_insert_with(Table::default)
        .insert(RETAIN_HEADER, Value::Bool(true));
}

/// Whether `message` was published with RETAIN set (see [`mark_retained`]).
pub(crate) fn published_retained(message: &Message) -> bool {
    message
        .properties
        .headers
        .as_ref()
        .and_then(|h| h.get(RETAIN_HEADER))
        .is_some_and(|value| matches!(value, Value::Bool(true)))
}

/// The QoS a message was published with: the MQTT header if an MQTT client published it,
/// else AMQP persistence (persistent → 1, transient → 0).
pub(crate) fn published_qos(message: &Message) -> QoS {
    let from_header = message
        .properties
        .headers
        .as_ref()
        .and_then(|h| h.get(QOS_HEADER))
        .and_then(Value::as_i64)
        .and_then(|q| u8::try_from(q).ok())
        .and_then(QoS::from_u8);
    from_header.unwrap_or(if message.properties.delivery_mode == Some(2) {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    })
}

/// The MQTT 5 properties of a delivery of `message`.
pub(crate) fn publish_properties(
    message: &Message,
    expires_at: Option<Instant>,
    subscription_identifiers: Vec<u32>,
) -> PublishProperties {
    let p = &message.properties;
    let mut out = PublishProperties {
        content_type: p.content_type.clone(),
        correlation_data: p.correlation_id.clone().map(Bytes::from),
        subscription_identifiers,
        ..PublishProperties::default()
    };
    if let Some(at) = expires_at {
        let left = at.saturating_duration_since(Instant::now());
        // Round up so a message with time left never reads as "no expiry" (0 is invalid).
        let seconds = (left + Duration::from_millis(999)).as_secs();
        out.message_expiry_interval = Some(u32::try_from(seconds.max(1)).unwrap_or(u32::MAX));
    }
    if let Some(headers) = &p.headers {
        for (key, value) in headers.iter() {
            match key.as_str() {
                QOS_HEADER | RETAIN_HEADER => {}
                REPLY_TO_TOPIC_HEADER => {
                    out.response_topic =
                        value_text(value).map(|key| routing_key_to_topic::<String>(&key))
                }
                CORRELATION_HEADER => {
                    if let Value::ByteArray(bytes) | Value::String(bytes) = value {
                        out.correlation_data = Some(bytes.clone());
                    }
                }
                PAYLOAD_FORMAT_HEADER => {
                    out.payload_format_indicator = value.as_i64().and_then(|v| u8::try_from(v).ok())
                }
                _ => {
                    if let Some(text) = value_text(value) {
                        out.user_properties.push((key.clone(), text));
                    }
                }
            }
        }
    }
    out
}

/// A header value as text, for MQTT user properties (strings and numbers; others skipped).
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(bytes) => std::str::from_utf8(bytes).ok().map(str::to_string),
        Value::Bool(b) => Some(b.to_string()),
        Value::F32(f) => Some(f.to_string()),
        Value::F64(f) => Some(f.to_string()),
        Value::Timestamp(t) => Some(t.to_string()),
        other => other.as_i64().map(|i| i.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_mapping_follows_rabbitmq() {
        assert_eq!(
            topic_to_routing_key::<String>("sensors/kitchen/temp"),
            "sensors.kitchen.temp"
        );
        assert_eq!(
            topic_to_routing_key::<String>("sensors/+/temp"),
            "sensors.*.temp"
        );
        assert_eq!(topic_to_routing_key::<String>("a/#"), "a.#");
        assert_eq!(topic_to_routing_key::<String>("v1.2/x"), "v1.2.x");
        assert_eq!(
            routing_key_to_topic::<String>("cmd.device42"),
            "cmd/device42"
        );
    }

    #[test]
    fn properties_round_trip_through_the_core() {
        let properties = PublishProperties {
            content_type: Some("application/json".into()),
            correlation_data: Some(Bytes::from_static(b"req-1")),
            response_topic: Some("replies/1".into()),
            user_properties: vec![("site".into(), "kitchen".into())],
            message_expiry_interval: Some(30),
            ..PublishProperties::default()
        };
        let message = message_from_publish(
            "amq.topic",
            "a/b",
            QoS::AtLeastOnce,
            Bytes::from_static(b"x"),
            &properties,
        );
        assert_eq!(message.routing_key, "a.b");
        assert_eq!(message.properties.expiration.as_deref(), Some("30000"));
        assert_eq!(message.properties.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(published_qos(&message), QoS::AtLeastOnce);
        let back = publish_properties(&message, None, vec![]);
        assert_eq!(back.content_type, properties.content_type);
        assert_eq!(back.correlation_data, properties.correlation_data);
        assert_eq!(back.response_topic, properties.response_topic);
        assert_eq!(back.user_properties, properties.user_properties);
        assert!(!published_retained(&message));
    }

    #[test]
    fn the_retain_flag_travels_as_a_header_hidden_from_user_properties() {
        let mut message = message_from_publish(
            "amq.topic",
            "a/b",
            QoS::AtMostOnce,
            Bytes::from_static(b"x"),
            &PublishProperties::default(),
        );
        mark_retained(&mut message);
        assert!(published_retained(&message));
        assert!(publish_properties(&message, None, vec![])
            .user_properties
            .is_empty());
    }
}
