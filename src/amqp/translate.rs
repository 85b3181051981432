//! Translation between AMQP wire types and the core's types.

use warren_amqp::properties::BasicProperties;
use warren_amqp::table::{FieldTable, FieldValue};

use crate::core::{CoreError, Properties, Table, Value};

/// Tag of [`crate::core::WireCache`] entries holding an AMQP content-header payload.
pub(crate) const HEADER_CACHE_FORMAT: &str = "amqp-0-9-1-content-header";

/// Converts an AMQP field table into a core table.
pub(crate) fn table_from_amqp(table: FieldTable) -> Table {
    Table(
        table
            .0
            .into_iter()
            .map(|(key, value)| (key, value_from_amqp(value)))
            .collect(),
    )
}

fn value_from_amqp(value: FieldValue) -> Value {
    match value {
        FieldValue::Boolean(v) => Value::Bool(v),
        FieldValue::ShortShortInt(v) => Value::I8(v),
        FieldValue::ShortShortUInt(v) => Value::U8(v),
        FieldValue::ShortInt(v) => Value::I16(v),
        FieldValue::ShortUInt(v) => Value::U16(v),
        FieldValue::LongInt(v) => Value::I32(v),
        FieldValue::LongUInt(v) => Value::U32(v),
        FieldValue::LongLongInt(v) => Value::I64(v),
        FieldValue::Float(v) => Value::F32(v),
        FieldValue::Double(v) => Value::F64(v),
        FieldValue::Decimal { scale, value } => Value::Decimal { scale, value },
        FieldValue::LongString(v) => Value::String(v),
        FieldValue::FieldArray(v) => Value::Array(v.into_iter().map(value_from_amqp).collect()),
        FieldValue::Timestamp(v) => Value::Timestamp(v),
        FieldValue::FieldTable(v) => Value::Table(table_from_amqp(v)),
        FieldValue::Void => Value::Void,
        FieldValue::ByteArray(v) => Value::ByteArray(v),
    }
}

/// Converts a core table into an AMQP field table.
pub(crate) fn table_to_amqp(table: &Table) -> FieldTable {
    FieldTable(
        table
            .iter()
            .map(|(key, value)| (key.clone(), value_to_amqp(value)))
            .collect(),
    )
}

fn value_to_amqp(value: &Value) -> FieldValue {
    match value {
        Value::Bool(v) => FieldValue::Boolean(*v),
        Value::I8(v) => FieldValue::ShortShortInt(*v),
        Value::U8(v) => FieldValue::ShortShortUInt(*v),
        Value::I16(v) => FieldValue::ShortInt(*v),
        Value::U16(v) => FieldValue::ShortUInt(*v),
        Value::I32(v) => FieldValue::LongInt(*v),
        Value::U32(v) => FieldValue::LongUInt(*v),
        Value::I64(v) => FieldValue::LongLongInt(*v),
        Value::F32(v) => FieldValue::Float(*v),
        Value::F64(v) => FieldValue::Double(*v),
        Value::Decimal { scale, value } => FieldValue::Decimal {
            scale: *scale,
            value: *value,
        },
        Value::String(v) => FieldValue::LongString(v.clone()),
        Value::Array(v) => FieldValue::FieldArray(v.iter().map(value_to_amqp).collect()),
        Value::Timestamp(v) => FieldValue::Timestamp(*v),
        Value::Table(v) => FieldValue::FieldTable(table_to_amqp(v)),
        Value::Void => FieldValue::Void,
        Value::ByteArray(v) => FieldValue::ByteArray(v.clone()),
    }
}

/// Converts AMQP basic properties into core properties.
pub(crate) fn properties_from_amqp(p: BasicProperties) -> Properties {
    Properties {
        content_type: p.content_type,
        content_encoding: p.content_encoding,
        headers: p.headers.map(table_from_amqp),
        delivery_mode: p.delivery_mode,
        priority: p.priority,
        correlation_id: p.correlation_id,
        reply_to: p.reply_to,
        expiration: p.expiration,
        message_id: p.message_id,
        timestamp: p.timestamp,
        kind: p.kind,
        user_id: p.user_id,
        app_id: p.app_id,
        cluster_id: p.cluster_id,
    }
}

/// Converts core properties into AMQP basic properties.
pub(crate) fn properties_to_amqp(p: &Properties) -> BasicProperties {
    BasicProperties {
        content_type: p.content_type.clone(),
        content_encoding: p.content_encoding.clone(),
        headers: p.headers.as_ref().map(table_to_amqp),
        delivery_mode: p.delivery_mode,
        priority: p.priority,
        correlation_id: p.correlation_id.clone(),
        reply_to: p.reply_to.clone(),
        expiration: p.expiration.clone(),
        message_id: p.message_id.clone(),
        timestamp: p.timestamp,
        kind: p.kind.clone(),
        user_id: p.user_id.clone(),
        app_id: p.app_id.clone(),
        cluster_id: p.cluster_id.clone(),
    }
}

/// The AMQP reply code for a core error; the error's text already carries RabbitMQ's wording.
pub(crate) fn reply_code(error: &CoreError) -> u16 {
    use warren_amqp::constants as c;
    match error {
        CoreError::NotFound(_) => c::NOT_FOUND,
        CoreError::ResourceLocked(_) => c::RESOURCE_LOCKED,
        CoreError::PreconditionFailed(_) => c::PRECONDITION_FAILED,
        CoreError::AccessRefused(_) => c::ACCESS_REFUSED,
        CoreError::CommandInvalid(_) => c::COMMAND_INVALID,
        CoreError::NotAllowed(_) => c::NOT_ALLOWED,
    }
}
