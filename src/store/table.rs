//! Header values carried by messages and binding/queue arguments, in the core's own types.
//!
//! The set of value kinds mirrors what AMQP field tables can hold, so a listener can translate
//! losslessly; MQTT user properties become [`Value::String`]s.

use bytes::Bytes;

/// An ordered table of named values (message headers, declare and binding arguments).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table(pub Vec<(String, Value)>);

/// One header or argument value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed 8-bit integer.
    I8(i8),
    /// An unsigned 8-bit integer.
    U8(u8),
    /// A signed 16-bit integer.
    I16(i16),
    /// An unsigned 16-bit integer.
    U16(u16),
    /// A signed 32-bit integer.
    I32(i32),
    /// An unsigned 32-bit integer.
    U32(u32),
    /// A signed 64-bit integer.
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A decimal: `value` × 10^-`scale`.
    Decimal {
        /// Number of decimal digits after the point.
        scale: u8,
        /// The unscaled value.
        value: u32,
    },
    /// A string (bytes, usually UTF-8).
    String(Bytes),
    /// A list of values.
    Array(Vec<Value>),
    /// Seconds since the Unix epoch.
    Timestamp(u64),
    /// A nested table.
    Table(Table),
    /// No value.
    Void,
    /// Opaque bytes.
    ByteArray(Bytes),
}

impl Table {
    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, Value)> {
        self.0.iter()
    }

    /// Sets `key` to `value`, replacing an existing entry.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.0.iter_mut().find(|(name, _)| *name == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value under `key` as a string, if it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::String(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

impl Value {
    /// The value as a signed integer, for any integer kind.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::U8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }
}
