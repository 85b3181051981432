//! Dead lettering: the copy of a message a queue gives up on, with the `x-death` history
//! RabbitMQ writes, and the cycle rule that keeps a dead letter from circling for ever.
//!
//! The header layout follows RabbitMQ's `rabbit_dead_letter` (3.10): `x-death` is an array of
//! tables, newest first, one per (queue, reason), each with `count` (long), `reason`, `queue`,
//! `time` (timestamp), `exchange`, `routing-keys` (array of long strings) and, when the
//! message had one, `original-expiration`; a repeated death in the same queue for the same
//! reason increments that table's `count`, sorts its fields and moves it to the front. The first
//! death also sets `x-first-death-reason`, `-queue` and `-exchange`; every death sets the
//! `x-last-death-*` trio too (newer RabbitMQ releases write it; 3.10 does not). The captures in
//! `tests/fixtures/rabbitmq-x-death/` show the byte layout this follows.

use std::sync::Arc;

use bytes::Bytes;

use super::message::Message;
use super::table::{Table, Value};

/// Why a queue gave up on a message: the `reason` of its `x-death` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// basic.reject or basic.nack with `requeue=false`.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// It was dropped (or refused) at the queue's length limit.
    MaxLength,
    /// A quorum queue returned it more often than `x-delivery-limit` allows.
    DeliveryLimit,
}

impl DeathReason {
    /// The name RabbitMQ writes.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLength => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message leaving a queue for its dead-letter exchange.
#[derive(Debug)]
pub struct DeadLetter {
    /// The message as it sat in the queue.
    pub message: Arc<Message>,
    /// Why it left.
    pub reason: DeathReason,
}

/// The message to publish to the dead-letter exchange `exchange` for `letter`, which died in
/// `queue` at `now` (seconds since the epoch). `routing_key` is `x-dead-letter-routing-key`
/// (the message keeps its own when unset).
pub fn dead_lettered(
    letter: &DeadLetter,
    queue: &str,
    exchange: &str,
    routing_key: Option<&str>,
    now: u64,
) -> Message {
    let original = &letter.message;
    let reason = letter.reason.as_str();
    let mut properties = original.properties.clone();
    let mut headers = properties.headers.take().unwrap_or_default();
    // The publish routing key first, then the CC keys, as RabbitMQ lists them.
    let mut routing_keys = vec![string(original.routing_key.as_bytes())];
    if let Some(Value::Array(cc)) = headers.get("CC") {
        routing_keys.extend(
            cc.iter()
                .filter(|key| matches!(key, Value::String(_)))
                .cloned(),
        );
    }
    let mut info = vec![
        ("reason".to_string(), string(reason.as_bytes())),
        ("queue".to_string(), string(queue.as_bytes())),
        ("time".to_string(), Value::Timestamp(now)),
        ("exchange".to_string(), string(original.exchange.as_bytes())),
        ("routing-keys".to_string(), Value::Array(routing_keys)),
    ];
    if let Some(expiration) = properties.expiration.take() {
        info.push((
            "original-expiration".to_string(),
            Value::String(Bytes::from(expiration)),
        ));
    }
    record_death(
        &mut headers,
        info,
        queue,
        reason,
        original.exchange.as_bytes(),
    );
    if routing_key.is_some() {
        // An explicit dead-letter routing key replaces the CC keys too.
        headers.0.retain(|(name, _)| name != "CC");
    }
    properties.headers = Some(headers);
    Message {
        exchange: exchange.into(),
        routing_key: routing_key.map_or_else(|| original.routing_key.clone(), Into::into),
        properties,
        body: original.body.clone(),
        wire_cache: None,
        origin: None,
    }
}

fn string(bytes: &[u8]) -> Value {
    Value::String(Bytes::copy_from_slice(bytes))
}

/// Adds one death to `headers`: a new `x-death` table in front, or the matching one's count
/// incremented and moved to the front.
fn record_death(
    headers: &mut Table,
    info: Vec<(String, Value)>,
    queue: &str,
    reason: &str,
    exchange: &[u8],
) {
    let deaths = match headers.get("x-death") {
        Some(Value::Array(deaths)) => Some(deaths.clone()),
        _ => None,
    };
    let deaths = match deaths {
        None => {
            headers.insert("x-first-death-reason", string(reason.as_bytes()));
            headers.insert("x-first-death-queue", string(queue.as_bytes()));
            headers.insert("x-first-death-exchange", string(exchange));
            let mut first = vec![("count".to_string(), Value::I64(1))];
            first.extend(info);
            vec![Value::Table(Table(first))]
        }
        Some(mut deaths) => {
            let matching = deaths.iter().position(|death| match death {
                Value::Table(table) => {
                    is_string(table.get("queue"), queue.as_bytes())
                        && is_string(table.get("reason"), reason.as_bytes())
                }
                _ => false,
            });
            let table = match matching.map(|index| deaths.remove(index)) {
                Some(Value::Table(mut table)) => {
                    let count = table.get("count").and_then(Value::as_i64).unwrap_or(0);
                    table.insert("count", Value::I64(count.saturating_add(1)));
                    // RabbitMQ sorts the fields of a table it updates.
                    table.0.sort_by(|a, b| a.0.cmp(&b.0));
                    table
                }
                _ => {
                    let mut fresh = vec![("count".to_string(), Value::I64(1))];
                    fresh.extend(info);
                    let mut table = Table(fresh);
                    table.0.sort_by(|a, b| a.0.cmp(&b.0));
                    table
                }
            };
            deaths.insert(0, Value::Table(table));
            deaths
        }
    };
    headers.insert("x-death", Value::Array(deaths));
    headers.insert("x-last-death-reason", string(reason.as_bytes()));
    headers.insert("x-last-death-queue", string(queue.as_bytes()));
    headers.insert("x-last-death-exchange", string(exchange));
    // RabbitMQ writes the whole headers table back sorted by key (the client's own headers
    // included), as a capture from 3.10 shows.
    headers.0.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
}

fn is_string(value: Option<&Value>, expected: &[u8]) -> bool {
    matches!(value, Some(Value::String(bytes)) if bytes.as_ref() == expected)
}

/// Whether dead-lettering `message` (already carrying its new `x-death` entry) into `queue`
/// closes a cycle RabbitMQ drops: the queue appears in the history and no death on the way
/// back to it was a rejection (a client in the loop may mean it; a TTL loop would spin).
pub fn is_cycle(message: &Message, reason: DeathReason, queue: &str) -> bool {
    if reason == DeathReason::Rejected {
        return false;
    }
    let Some(Value::Array(deaths)) = message
        .properties
        .headers
        .as_ref()
        .and_then(|headers| headers.get("x-death"))
    else {
        return false;
    };
    for death in deaths {
        let Value::Table(table) = death else {
            return false;
        };
        if is_string(table.get("reason"), b"rejected") {
            return false;
        }
        if is_string(table.get("queue"), queue.as_bytes()) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::message::Properties;

    fn message(expiration: Option<&str>) -> Arc<Message> {
        Arc::new(Message {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            properties: Properties {
                expiration: expiration.map(str::to_string),
                ..Properties::default()
            },
            body: Bytes::from_static(b"body"),
            wire_cache: None,
            origin: None,
        })
    }

    fn deaths(message: &Message) -> Vec<Table> {
        match message.properties.headers.as_ref().unwrap().get("x-death") {
            Some(Value::Array(deaths)) => deaths
                .iter()
                .map(|d| match d {
                    Value::Table(t) => t.clone(),
                    _ => panic!("not a table"),
                })
                .collect(),
            _ => panic!("no x-death"),
        }
    }

    #[test]
    fn first_death_writes_the_history_and_drops_the_expiration() {
        let letter = DeadLetter {
            message: message(Some("100")),
            reason: DeathReason::Expired,
        };
        let dead = dead_lettered(&letter, "q", "dlx", None, 42);
        assert_eq!(dead.exchange.as_str(), "dlx");
        assert_eq!(dead.routing_key.as_str(), "rk");
        assert_eq!(dead.properties.expiration, None);
        let history = deaths(&dead);
        assert_eq!(history.len(), 1);
        let keys: Vec<&str> = history[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys",
                "original-expiration"
            ]
        );
        assert_eq!(history[0].get("count"), Some(&Value::I64(1)));
        assert_eq!(history[0].get("time"), Some(&Value::Timestamp(42)));
        let headers = dead.properties.headers.as_ref().unwrap();
        assert_eq!(headers.get_str("x-first-death-reason"), Some("expired"));
        assert_eq!(headers.get_str("x-last-death-queue"), Some("q"));
    }

    #[test]
    fn repeated_deaths_merge_and_cycles_are_found() {
        let once = dead_lettered(
            &DeadLetter {
                message: message(None),
                reason: DeathReason::Rejected,
            },
            "a",
            "",
            Some("b"),
            1,
        );
        let twice = dead_lettered(
            &DeadLetter {
                message: Arc::new(once),
                reason: DeathReason::Rejected,
            },
            "b",
            "",
            Some("a"),
            2,
        );
        let thrice = dead_lettered(
            &DeadLetter {
                message: Arc::new(twice),
                reason: DeathReason::Rejected,
            },
            "a",
            "",
            Some("b"),
            3,
        );
        let history = deaths(&thrice);
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].get_str("queue"), Some("a"));
        assert_eq!(history[0].get("count"), Some(&Value::I64(2)));
        assert_eq!(history[1].get("count"), Some(&Value::I64(1)));
        // Rejections never count as cycles; an expiry loop does.
        assert!(!is_cycle(&thrice, DeathReason::Rejected, "a"));
        let expired = dead_lettered(
            &DeadLetter {
                message: message(None),
                reason: DeathReason::Expired,
            },
            "a",
            "",
            None,
            1,
        );
        assert!(is_cycle(&expired, DeathReason::Expired, "a"));
        assert!(!is_cycle(&expired, DeathReason::Expired, "other"));
    }
}
