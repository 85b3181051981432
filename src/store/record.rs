//! The on-disk encoding of log records and of messages inside them. The format is the
//! store's own (not any protocol's), so the wire codecs can change without touching disk.
//!
//! Record payload: a type octet, then the type's fields. Integers are big-endian; strings
//! and byte strings carry a length prefix.

use bytes::{BufMut, Bytes, BytesMut};

use super::message::{Message, Properties};
use super::table::{Table, Value};

/// Record type: a persistent message and the durable queues it went to.
pub(crate) const PUBLISH: u8 = 1;
/// Record type: a message left a queue for good (ack, drop, expiry, purge, delete).
pub(crate) const ACK: u8 = 2;
/// Record type: a message was delivered (so it is redelivered after a restart).
pub(crate) const DELIVER: u8 = 3;

/// Deepest nesting of tables/arrays decoded, so a corrupt record cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// A decoded record.
#[derive(Debug)]
pub(crate) enum Record {
    Publish {
        msg_id: u64,
        queues: Vec<String>,
        message: Box<Message>,
    },
    Ack {
        msg_id: u64,
        queue: String,
    },
    Deliver {
        msg_id: u64,
        queue: String,
    },
}

/// Why a record payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed record: {0}")]
pub(crate) struct RecordError(&'static str);

pub(crate) fn encode_publish(msg_id: u64, queues: &[&str], message: &Message, out: &mut BytesMut) {
    out.put_u8(PUBLISH);
    out.put_u64(msg_id);
    out.put_u16(u16::try_from(queues.len()).unwrap_or(u16::MAX));
    for queue in queues.iter().take(usize::from(u16::MAX)) {
        put_str16(out, queue);
    }
    put_str16(out, &message.exchange);
    put_str16(out, &message.routing_key);
    put_properties(out, &message.properties);
    put_bytes32(out, &message.body);
}

pub(crate) fn encode_marker(kind: u8, msg_id: u64, queue: &str, out: &mut BytesMut) {
    out.put_u8(kind);
    out.put_u64(msg_id);
    put_str16(out, queue);
}

pub(crate) fn decode(payload: Bytes) -> Result<Record, RecordError> {
    let mut r = Reader { buf: payload };
    let kind = r.u8()?;
    let record = match kind {
        PUBLISH => {
            let msg_id = r.u64()?;
            let count = r.u16()?;
            let mut queues = Vec::with_capacity(usize::from(count).min(64));
            for _ in 0..count {
                queues.push(r.str16()?);
            }
            let exchange = r.str16()?;
            let routing_key = r.str16()?;
            let properties = r.properties()?;
            let body = r.bytes32()?;
            Record::Publish {
                msg_id,
                queues,
                message: Box::new(Message {
                    exchange: exchange.into(),
                    routing_key: routing_key.into(),
                    properties,
                    body,
                    wire_cache: None,
                    origin: None,
                }),
            }
        }
        ACK | DELIVER => {
            let msg_id = r.u64()?;
            let queue = r.str16()?;
            if kind == ACK {
                Record::Ack { msg_id, queue }
            } else {
                Record::Deliver { msg_id, queue }
            }
        }
        _ => return Err(RecordError("unknown record type")),
    };
    if !r.buf.is_empty() {
        return Err(RecordError("trailing bytes"));
    }
    Ok(record)
}

fn put_str16(out: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16);
    out.put_slice(&bytes[..len]);
}

fn put_bytes32(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

fn put_opt_str(out: &mut BytesMut, value: &Option<String>) {
    if let Some(s) = value {
        put_bytes32(out, s.as_bytes());
    }
}

fn put_properties(out: &mut BytesMut, p: &Properties) {
    let flags: u16 = [
        p.content_type.is_some(),
        p.content_encoding.is_some(),
        p.headers.is_some(),
        p.delivery_mode.is_some(),
        p.priority.is_some(),
        p.correlation_id.is_some(),
        p.reply_to.is_some(),
        p.expiration.is_some(),
        p.message_id.is_some(),
        p.timestamp.is_some(),
        p.kind.is_some(),
        p.user_id.is_some(),
        p.app_id.is_some(),
        p.cluster_id.is_some(),
    ]
    .iter()
    .enumerate()
    .fold(0, |acc, (i, set)| acc | (u16::from(*set) << i));
    out.put_u16(flags);
    put_opt_str(out, &p.content_type);
    put_opt_str(out, &p.content_encoding);
    if let Some(headers) = &p.headers {
        put_table(out, headers);
    }
    if let Some(v) = p.delivery_mode {
        out.put_u8(v);
    }
    if let Some(v) = p.priority {
        out.put_u8(v);
    }
    put_opt_str(out, &p.correlation_id);
    put_opt_str(out, &p.reply_to);
    put_opt_str(out, &p.expiration);
    put_opt_str(out, &p.message_id);
    if let Some(v) = p.timestamp {
        out.put_u64(v);
    }
    put_opt_str(out, &p.kind);
    put_opt_str(out, &p.user_id);
    put_opt_str(out, &p.app_id);
    put_opt_str(out, &p.cluster_id);
}

fn put_table(out: &mut BytesMut, table: &Table) {
    out.put_u32(u32::try_from(table.0.len()).unwrap_or(u32::MAX));
    for (key, value) in table.iter() {
        put_str16(out, key);
        put_value(out, value);
    }
}

fn put_value(out: &mut BytesMut, value: &Value) {
    match value {
        Value::Bool(v) => {
            out.put_u8(b't');
            out.put_u8(u8::from(*v));
        }
        Value::I8(v) => {
            out.put_u8(b'b');
            out.put_i8(*v);
        }
        Value::U8(v) => {
            out.put_u8(b'B');
            out.put_u8(*v);
        }
        Value::I16(v) => {
            out.put_u8(b's');
            out.put_i16(*v);
        }
        Value::U16(v) => {
            out.put_u8(b'u');
            out.put_u16(*v);
        }
        Value::I32(v) => {
            out.put_u8(b'I');
            out.put_i32(*v);
        }
        Value::U32(v) => {
            out.put_u8(b'i');
            out.put_u32(*v);
        }
        Value::I64(v) => {
            out.put_u8(b'l');
            out.put_i64(*v);
        }
        Value::F32(v) => {
            out.put_u8(b'f');
            out.put_f32(*v);
        }
        Value::F64(v) => {
            out.put_u8(b'd');
            out.put_f64(*v);
        }
        Value::Decimal { scale, value } => {
            out.put_u8(b'D');
            out.put_u8(*scale);
            out.put_u32(*value);
        }
        Value::String(v) => {
            out.put_u8(b'S');
            put_bytes32(out, v);
        }
        Value::Array(values) => {
            out.put_u8(b'A');
            out.put_u32(u32::try_from(values.len()).unwrap_or(u32::MAX));
            for v in values {
                put_value(out, v);
            }
        }
        Value::Timestamp(v) => {
            out.put_u8(b'T');
            out.put_u64(*v);
        }
        Value::Table(t) => {
            out.put_u8(b'F');
            put_table(out, t);
        }
        Value::Void => out.put_u8(b'V'),
        Value::ByteArray(v) => {
            out.put_u8(b'x');
            put_bytes32(out, v);
        }
    }
}

/// A checked cursor: every read fails cleanly on short input.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, RecordError> {
        if self.buf.len() < n {
            return Err(RecordError("truncated"));
        }
        Ok(self.buf.split_to(n))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str16(&mut self) -> Result<String, RecordError> {
        let len = self.u16()?;
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError("invalid UTF-8"))
    }

    fn bytes32(&mut self) -> Result<Bytes, RecordError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string32(&mut self) -> Result<String, RecordError> {
        let bytes = self.bytes32()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError("invalid UTF-8"))
    }

    fn properties(&mut self) -> Result<Properties, RecordError> {
        let flags = self.u16()?;
        let has = |bit: u16| flags & (1 << bit) != 0;
        let mut p = Properties::default();
        if has(0) {
            p.content_type = Some(self.string32()?);
        }
        if has(1) {
            p.content_encoding = Some(self.string32()?);
        }
        if has(2) {
            p.headers = Some(self.table(0)?);
        }
        if has(3) {
            p.delivery_mode = Some(self.u8()?);
        }
        if has(4) {
            p.priority = Some(self.u8()?);
        }
        if has(5) {
            p.correlation_id = Some(self.string32()?);
        }
        if has(6) {
            p.reply_to = Some(self.string32()?);
        }
        if has(7) {
            p.expiration = Some(self.string32()?);
        }
        if has(8) {
            p.message_id = Some(self.string32()?);
        }
        if has(9) {
            p.timestamp = Some(self.u64()?);
        }
        if has(10) {
            p.kind = Some(self.string32()?);
        }
        if has(11) {
            p.user_id = Some(self.string32()?);
        }
        if has(12) {
            p.app_id = Some(self.string32()?);
        }
        if has(13) {
            p.cluster_id = Some(self.string32()?);
        }
        Ok(p)
    }

    fn table(&mut self, depth: usize) -> Result<Table, RecordError> {
        if depth > MAX_DEPTH {
            return Err(RecordError("nested too deeply"));
        }
        let count = self.u32()? as usize;
        let mut entries = Vec::with_capacity(count.min(self.buf.len() / 3 + 1));
        for _ in 0..count {
            let key = self.str16()?;
            let value = self.value(depth)?;
            entries.push((key, value));
        }
        Ok(Table(entries))
    }

    fn value(&mut self, depth: usize) -> Result<Value, RecordError> {
        Ok(match self.u8()? {
            b't' => Value::Bool(self.u8()? != 0),
            b'b' => Value::I8(self.u8()? as i8),
            b'B' => Value::U8(self.u8()?),
            b's' => Value::I16(i16::from_be_bytes(self.array()?)),
            b'u' => Value::U16(self.u16()?),
            b'I' => Value::I32(i32::from_be_bytes(self.array()?)),
            b'i' => Value::U32(self.u32()?),
            b'l' => Value::I64(i64::from_be_bytes(self.array()?)),
            b'f' => Value::F32(f32::from_be_bytes(self.array()?)),
            b'd' => Value::F64(f64::from_be_bytes(self.array()?)),
            b'D' => Value::Decimal {
                scale: self.u8()?,
                value: self.u32()?,
            },
            b'S' => Value::String(self.bytes32()?),
            b'A' => {
                if depth > MAX_DEPTH {
                    return Err(RecordError("nested too deeply"));
                }
                let count = self.u32()? as usize;
                let mut values = Vec::with_capacity(count.min(self.buf.len() + 1));
                for _ in 0..count {
                    values.push(self.value(depth + 1)?);
                }
                Value::Array(values)
            }
            b'T' => Value::Timestamp(self.u64()?),
            b'F' => Value::Table(self.table(depth + 1)?),
            b'V' => Value::Void,
            b'x' => Value::ByteArray(self.bytes32()?),
            _ => return Err(RecordError("unknown value type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips() {
        let mut headers = Table::default();
        headers.insert("a", Value::I32(-5));
        headers.insert(
            "nested",
            Value::Array(vec![
                Value::String(Bytes::from_static(b"x")),
                Value::Table(Table::default()),
                Value::Decimal {
                    scale: 2,
                    value: 314,
                },
            ]),
        );
        let message = Message {
            exchange: "ex".into(),
            routing_key: "a.b".into(),
            properties: Properties {
                content_type: Some("text/plain".into()),
                headers: Some(headers),
                delivery_mode: Some(2),
                timestamp: Some(7),
                expiration: Some("1000".into()),
                ..Properties::default()
            },
            body: Bytes::from_static(b"hello"),
            wire_cache: None,
            origin: None,
        };
        let mut out = BytesMut::new();
        encode_publish(42, &["/\0q1", "/\0q2"], &message, &mut out);
        match decode(out.freeze()) {
            Ok(Record::Publish {
                msg_id,
                queues,
                message: back,
            }) => {
                assert_eq!(msg_id, 42);
                assert_eq!(queues, vec!["/\0q1", "/\0q2"]);
                assert_eq!(back.properties, message.properties);
                assert_eq!(back.body, message.body);
                assert_eq!(back.routing_key, "a.b");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncated_records_fail_cleanly() {
        let mut out = BytesMut::new();
        encode_marker(ACK, 9, "/\0q", &mut out);
        let full = out.freeze();
        for cut in 0..full.len() {
            assert!(decode(full.slice(..cut)).is_err());
        }
        assert!(matches!(decode(full), Ok(Record::Ack { msg_id: 9, .. })));
    }
}
