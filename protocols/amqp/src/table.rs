//! AMQP field tables and field values (AMQP §4.2.5.5 with RabbitMQ's errata type letters).
//!
//! A table on the wire is a u32 byte length followed by entries `shortstr key, type
//! letter, value`. The length is checked against the input before anything is parsed,
//! so a table claiming 4 GB fails at once without allocating. Long strings and byte
//! arrays are zero-copy slices of the input. Nesting (tables in arrays in tables…) is
//! limited to [`MAX_DEPTH`] so hostile input cannot overflow the stack.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::wire;

/// How deeply field tables and arrays may nest before decoding fails with
/// [`DecodeError::TooDeep`]. The outermost table is depth 1.
pub const MAX_DEPTH: usize = 100;

/// Ordered AMQP field table (keys are shortstr).
///
/// Entry order is kept as received. Duplicate keys from the wire are kept too;
/// [`FieldTable::get`] returns the first, [`FieldTable::insert`] replaces it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(String, FieldValue)>);

/// Every field value type RabbitMQ reads and writes (its errata type letters).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`: boolean (any non-zero octet decodes as true).
    Boolean(bool),
    /// `b`: signed 8-bit integer.
    ShortShortInt(i8),
    /// `B`: unsigned 8-bit integer.
    ShortShortUInt(u8),
    /// `s`: signed 16-bit integer.
    ShortInt(i16),
    /// `u`: unsigned 16-bit integer.
    ShortUInt(u16),
    /// `I`: signed 32-bit integer.
    LongInt(i32),
    /// `i`: unsigned 32-bit integer.
    LongUInt(u32),
    /// `l`: signed 64-bit integer.
    LongLongInt(i64),
    /// `f`: IEEE 754 single.
    Float(f32),
    /// `d`: IEEE 754 double.
    Double(f64),
    /// `D`: decimal, `value / 10^scale`.
    Decimal {
        /// Number of decimal digits after the point.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// `S`: long string (bytes, not necessarily UTF-8).
    LongString(Bytes),
    /// `A`: field array.
    FieldArray(Vec<FieldValue>),
    /// `T`: timestamp, seconds since the epoch.
    Timestamp(u64),
    /// `F`: nested field table.
    FieldTable(FieldTable),
    /// `V`: no value.
    Void,
    /// `x`: byte array (u32 length + bytes).
    ByteArray(Bytes),
}

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing the first existing entry of that name in place,
    /// else appending.
    pub fn insert(&mut self, key: impl Into<String>, value: FieldValue) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, FieldValue)> {
        self.0.iter()
    }

    /// Reads a table (u32 length prefix + entries) from the front of `buf`.
    pub fn decode(buf: &mut Bytes) -> Result<FieldTable, DecodeError> {
        decode_table(buf, 1)
    }

    /// Appends the table (u32 length prefix + entries) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let pos = wire::begin_len(out);
        for (key, value) in &self.0 {
            wire::put_shortstr(out, key);
            value.encode(out);
        }
        wire::patch_len(out, pos);
    }
}

impl FromIterator<(String, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (String, FieldValue)>>(iter: I) -> Self {
        FieldTable(iter.into_iter().collect())
    }
}

impl FieldValue {
    /// The type letter this value is written with.
    pub fn type_letter(&self) -> u8 {
        match self {
            FieldValue::Boolean(_) => b't',
            FieldValue::ShortShortInt(_) => b'b',
            FieldValue::ShortShortUInt(_) => b'B',
            FieldValue::ShortInt(_) => b's',
            FieldValue::ShortUInt(_) => b'u',
            FieldValue::LongInt(_) => b'I',
            FieldValue::LongUInt(_) => b'i',
            FieldValue::LongLongInt(_) => b'l',
            FieldValue::Float(_) => b'f',
            FieldValue::Double(_) => b'd',
            FieldValue::Decimal { .. } => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::FieldArray(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::FieldTable(_) => b'F',
            FieldValue::Void => b'V',
            FieldValue::ByteArray(_) => b'x',
        }
    }

    /// Appends the type letter and the value to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.type_letter());
        match self {
            FieldValue::Boolean(b) => out.put_u8(u8::from(*b)),
            FieldValue::ShortShortInt(v) => out.put_i8(*v),
            FieldValue::ShortShortUInt(v) => out.put_u8(*v),
            FieldValue::ShortInt(v) => out.put_i16(*v),
            FieldValue::ShortUInt(v) => out.put_u16(*v),
            FieldValue::LongInt(v) => out.put_i32(*v),
            FieldValue::LongUInt(v) => out.put_u32(*v),
            FieldValue::LongLongInt(v) => out.put_i64(*v),
            FieldValue::Float(v) => out.put_f32(*v),
            FieldValue::Double(v) => out.put_f64(*v),
            FieldValue::Decimal { scale, value } => {
                out.put_u8(*scale);
                out.put_u32(*value);
            }
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => wire::put_longstr(out, b),
            FieldValue::FieldArray(items) => {
                let pos = wire::begin_len(out);
                for item in items {
                    item.encode(out);
                }
                wire::patch_len(out, pos);
            }
            FieldValue::Timestamp(v) => out.put_u64(*v),
            FieldValue::FieldTable(t) => t.encode(out),
            FieldValue::Void => {}
        }
    }

    /// Reads one type letter + value from the front of `buf`.
    pub fn decode(buf: &mut Bytes) -> Result<FieldValue, DecodeError> {
        decode_value(buf, 1)
    }
}

/// Reads a length-prefixed table; `depth` is this table's nesting level.
fn decode_table(buf: &mut Bytes, depth: usize) -> Result<FieldTable, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let mut body = wire::get_longstr(buf, "field table")?;
    let mut entries = Vec::new();
    while body.has_remaining() {
        let key = wire::get_shortstr(&mut body, "field table key")?;
        let value = decode_value(&mut body, depth)?;
        entries.push((key, value));
    }
    Ok(FieldTable(entries))
}

/// Reads a length-prefixed field array; `depth` is its nesting level.
fn decode_array(buf: &mut Bytes, depth: usize) -> Result<Vec<FieldValue>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let mut body = wire::get_longstr(buf, "field array")?;
    let mut items = Vec::new();
    while body.has_remaining() {
        items.push(decode_value(&mut body, depth)?);
    }
    Ok(items)
}

/// Reads a type letter + value found inside a container at nesting level `depth`.
fn decode_value(buf: &mut Bytes, depth: usize) -> Result<FieldValue, DecodeError> {
    const WHAT: &str = "field value";
    let letter = wire::get_u8(buf, "field value type")?;
    Ok(match letter {
        b't' => FieldValue::Boolean(wire::get_u8(buf, WHAT)? != 0),
        b'b' => FieldValue::ShortShortInt(wire::get_u8(buf, WHAT)? as i8),
        b'B' => FieldValue::ShortShortUInt(wire::get_u8(buf, WHAT)?),
        b's' => FieldValue::ShortInt(wire::get_u16(buf, WHAT)? as i16),
        b'u' => FieldValue::ShortUInt(wire::get_u16(buf, WHAT)?),
        b'I' => FieldValue::LongInt(wire::get_u32(buf, WHAT)? as i32),
        b'i' => FieldValue::LongUInt(wire::get_u32(buf, WHAT)?),
        b'l' => FieldValue::LongLongInt(wire::get_u64(buf, WHAT)? as i64),
        b'f' => FieldValue::Float(f32::from_bits(wire::get_u32(buf, WHAT)?)),
        b'd' => FieldValue::Double(f64::from_bits(wire::get_u64(buf, WHAT)?)),
        b'D' => {
            let scale = wire::get_u8(buf, WHAT)?;
            let value = wire::get_u32(buf, WHAT)?;
            FieldValue::Decimal { scale, value }
        }
        b'S' => FieldValue::LongString(wire::get_longstr(buf, "long string value")?),
        b'A' => FieldValue::FieldArray(decode_array(buf, depth + 1)?),
        b'T' => FieldValue::Timestamp(wire::get_u64(buf, WHAT)?),
        b'F' => FieldValue::FieldTable(decode_table(buf, depth + 1)?),
        b'V' => FieldValue::Void,
        b'x' => FieldValue::ByteArray(wire::get_longstr(buf, "byte array value")?),
        other => return Err(DecodeError::BadFieldType(other)),
    })
}
