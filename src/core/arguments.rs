//! Checks of queue declare arguments, as RabbitMQ 3.10 makes them: every argument RabbitMQ
//! knows is either acted on by warren or refused with 406 PRECONDITION_FAILED naming it, so a
//! client never believes a feature is on when it is not. Arguments RabbitMQ does not know are
//! ignored, as RabbitMQ ignores them.

use super::error::{CoreError, CoreResult};
use super::table::{Table, Value};

/// What the checks look at in a queue declaration.
#[derive(Debug, Clone, Copy)]
pub struct DeclaredQueue<'a> {
    /// The queue's name.
    pub name: &'a str,
    /// Whether it is to survive a restart.
    pub durable: bool,
    /// Whether it belongs to the declaring connection.
    pub exclusive: bool,
    /// Whether it goes with its last consumer.
    pub auto_delete: bool,
    /// Its arguments.
    pub arguments: &'a Table,
}

/// The queue types a declaration may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    /// The default.
    Classic,
    /// A quorum queue: on one node, a durable queue with quorum rules (durable only, never
    /// exclusive or auto-delete, `x-delivery-limit`).
    Quorum,
}

/// Checks `declare`'s arguments for a queue in `vhost`; returns the queue type.
pub fn check_queue_arguments(declare: DeclaredQueue<'_>, vhost: &str) -> CoreResult<QueueType> {
    let name = declare.name;
    let invalid = |key: &str, reason: String| {
        CoreError::PreconditionFailed(format!(
            "PRECONDITION_FAILED - invalid arg '{key}' for queue '{name}' in vhost '{vhost}': {reason}"
        ))
    };
    let arguments = declare.arguments;
    let queue_type = match arguments.get("x-queue-type") {
        None => QueueType::Classic,
        Some(Value::String(text)) => match text.as_ref() {
            b"classic" => QueueType::Classic,
            b"quorum" => QueueType::Quorum,
            b"stream" => {
                return Err(CoreError::PreconditionFailed(format!(
                    "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{name}' in vhost '{vhost}': stream queues are not supported by warren yet"
                )))
            }
            other => {
                return Err(invalid(
                    "x-queue-type",
                    format!("unknown queue type '{}'", String::from_utf8_lossy(other)),
                ))
            }
        },
        Some(other) => return Err(invalid("x-queue-type", unacceptable(other))),
    };
    if queue_type == QueueType::Quorum {
        let property = |property: &str| {
            CoreError::PreconditionFailed(format!(
                "PRECONDITION_FAILED - invalid property '{property}' for queue '{name}' in vhost '{vhost}'"
            ))
        };
        if !declare.durable {
            return Err(property("non-durable"));
        }
        if declare.exclusive {
            return Err(property("exclusive-owner"));
        }
        if declare.auto_delete {
            return Err(property("auto-delete"));
        }
    }
    for (key, value) in arguments.iter() {
        check_argument(key, value, arguments, queue_type, &invalid)?;
    }
    Ok(queue_type)
}

fn check_argument(
    key: &str,
    value: &Value,
    arguments: &Table,
    queue_type: QueueType,
    invalid: &dyn Fn(&str, String) -> CoreError,
) -> CoreResult<()> {
    let type_name = match queue_type {
        QueueType::Classic => "rabbit_classic_queue",
        QueueType::Quorum => "rabbit_quorum_queue",
    };
    let unsupported = || {
        Err(invalid(
            key,
            format!("not supported by queue type {type_name}"),
        ))
    };
    let quorum_only = |check: CoreResult<()>| match queue_type {
        QueueType::Quorum => check,
        QueueType::Classic => unsupported(),
    };
    match key {
        "x-message-ttl" | "x-max-length" | "x-max-length-bytes" => {
            non_negative(key, value, invalid)
        }
        "x-expires" => positive(key, value, invalid),
        "x-delivery-limit" => quorum_only(non_negative(key, value, invalid)),
        "x-quorum-initial-group-size" => quorum_only(positive(key, value, invalid)),
        "x-max-priority" => match queue_type {
            QueueType::Quorum => unsupported(),
            QueueType::Classic => match value.as_i64() {
                Some(n) if (0..=255).contains(&n) => Ok(()),
                Some(n) if n < 0 => Err(invalid(key, format!("{{value_negative,{n}}}"))),
                Some(n) => Err(invalid(key, format!("{{max_value_exceeded,{n}}}"))),
                None => Err(invalid(key, unacceptable(value))),
            },
        },
        "x-dead-letter-exchange" => string(key, value, invalid),
        "x-dead-letter-routing-key" => {
            string(key, value, invalid)?;
            if arguments.get("x-dead-letter-exchange").is_none() {
                return Err(invalid(
                    key,
                    "Key x-dead-letter-routing-key should be specified together with x-dead-letter-exchange".into(),
                ));
            }
            Ok(())
        }
        "x-overflow" => {
            let text = text(key, value, invalid)?;
            match (text.as_str(), queue_type) {
                ("drop-head" | "reject-publish", _) => Ok(()),
                ("reject-publish-dlx", QueueType::Classic) => Ok(()),
                ("reject-publish-dlx", QueueType::Quorum) => unsupported(),
                _ => Err(invalid(
                    key,
                    format!("{{unknown_overflow, <<\"{text}\">>}}"),
                )),
            }
        }
        "x-queue-mode" => match (text(key, value, invalid)?.as_str(), queue_type) {
            // warren pages every queue to disk under memory pressure, so `lazy` changes
            // nothing it would not do anyway.
            ("default" | "lazy", QueueType::Classic) => Ok(()),
            (_, QueueType::Quorum) => unsupported(),
            (other, _) => Err(invalid(
                key,
                format!("{{unknown_queue_mode, <<\"{other}\">>}}"),
            )),
        },
        "x-single-active-consumer" => match value {
            Value::Bool(_) => Ok(()),
            other => Err(invalid(key, unacceptable(other))),
        },
        // Where a queue's leader goes: one node has one place.
        "x-queue-master-locator" | "x-queue-leader-locator" => {
            match text(key, value, invalid)?.as_str() {
                "client-local" | "min-masters" | "random" | "balanced" => Ok(()),
                other => Err(invalid(key, format!("unknown locator '{other}'"))),
            }
        }
        "x-dead-letter-strategy" => match (text(key, value, invalid)?.as_str(), queue_type) {
            ("at-most-once", QueueType::Quorum) => Ok(()),
            ("at-least-once", QueueType::Quorum) => Err(invalid(
                key,
                "at-least-once dead lettering is not supported by warren yet".into(),
            )),
            (_, QueueType::Classic) => unsupported(),
            (other, _) => Err(invalid(key, format!("unknown strategy '{other}'"))),
        },
        // RabbitMQ's per-queue memory caps for quorum queues; warren's own paging budget
        // applies instead, so the cap would not be honoured as asked.
        "x-max-in-memory-length" | "x-max-in-memory-bytes" => Err(invalid(
            key,
            "not supported by warren (queues page to disk beyond a fixed memory budget)".into(),
        )),
        // Stream arguments belong to a queue type warren refuses above.
        "x-max-age" | "x-stream-max-segment-size-bytes" | "x-initial-cluster-size" => unsupported(),
        _ => Ok(()),
    }
}

fn unacceptable(value: &Value) -> String {
    let kind = match value {
        Value::Bool(_) => "bool",
        Value::String(_) => "longstr",
        Value::Array(_) => "array",
        Value::Table(_) => "table",
        Value::Timestamp(_) => "timestamp",
        Value::F32(_) | Value::F64(_) => "float",
        Value::Decimal { .. } => "decimal",
        Value::Void => "void",
        Value::ByteArray(_) => "binary",
        _ => "long",
    };
    format!("{{unacceptable_type,{kind}}}")
}

fn non_negative(
    key: &str,
    value: &Value,
    invalid: &dyn Fn(&str, String) -> CoreError,
) -> CoreResult<()> {
    match value.as_i64() {
        Some(n) if n >= 0 => Ok(()),
        Some(n) => Err(invalid(key, format!("{{value_negative,{n}}}"))),
        None => Err(invalid(key, unacceptable(value))),
    }
}

fn positive(
    key: &str,
    value: &Value,
    invalid: &dyn Fn(&str, String) -> CoreError,
) -> CoreResult<()> {
    match value.as_i64() {
        Some(n) if n > 0 => Ok(()),
        Some(0) => Err(invalid(key, "{value_zero,0}".into())),
        Some(n) => Err(invalid(key, format!("{{value_negative,{n}}}"))),
        None => Err(invalid(key, unacceptable(value))),
    }
}

fn string(key: &str, value: &Value, invalid: &dyn Fn(&str, String) -> CoreError) -> CoreResult<()> {
    text(key, value, invalid).map(|_| ())
}

fn text(
    key: &str,
    value: &Value,
    invalid: &dyn Fn(&str, String) -> CoreError,
) -> CoreResult<String> {
    match value {
        Value::String(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        other => Err(invalid(key, unacceptable(other))),
    }
}
