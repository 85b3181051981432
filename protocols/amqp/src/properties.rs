//! Content headers and the basic-class properties (AMQP §4.2.6.1).
//!
//! A header frame payload is `class id (u16), weight (u16), body size (u64), property
//! flags (u16), present properties in flag order`. Bit 15 of the flags is the first
//! property (`content-type`), bit 2 the fourteenth (`cluster-id`). Bit 0 (the
//! continuation flag) and bit 1 are ignored on decode and written as zero, as RabbitMQ
//! does: the basic class has only 14 properties, so one flags word always suffices.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::table::FieldTable;
use crate::wire;

/// The 14 basic-class properties, in flag order (bit 15 = content_type ... bit 2 = cluster_id).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    /// `content-type` (bit 15): MIME content type.
    pub content_type: Option<String>,
    /// `content-encoding` (bit 14): MIME content encoding.
    pub content_encoding: Option<String>,
    /// `headers` (bit 13): application headers.
    pub headers: Option<FieldTable>,
    /// `delivery-mode` (bit 12): 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// `priority` (bit 11): message priority.
    pub priority: Option<u8>,
    /// `correlation-id` (bit 10): application correlation identifier.
    pub correlation_id: Option<String>,
    /// `reply-to` (bit 9): address to reply to.
    pub reply_to: Option<String>,
    /// `expiration` (bit 8): per-message TTL in milliseconds, as a decimal string.
    pub expiration: Option<String>,
    /// `message-id` (bit 7): application message identifier.
    pub message_id: Option<String>,
    /// `timestamp` (bit 6): message timestamp, seconds since the epoch.
    pub timestamp: Option<u64>,
    /// `type` (bit 5): message type name.
    pub kind: Option<String>,
    /// `user-id` (bit 4): creating user id (RabbitMQ validates it against the login).
    pub user_id: Option<String>,
    /// `app-id` (bit 3): creating application id.
    pub app_id: Option<String>,
    /// `cluster-id` (bit 2): deprecated, carried unchanged.
    pub cluster_id: Option<String>,
}

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;

/// Reads a short string if `flag` is set in `flags`.
#[inline]
fn opt_shortstr(
    buf: &mut Bytes,
    flags: u16,
    flag: u16,
    what: &'static str,
) -> Result<Option<String>, DecodeError> {
    if flags & flag == 0 {
        return Ok(None);
    }
    wire::get_shortstr(buf, what).map(Some)
}

/// Reads an octet if `flag` is set in `flags`.
#[inline]
fn opt_u8(
    buf: &mut Bytes,
    flags: u16,
    flag: u16,
    what: &'static str,
) -> Result<Option<u8>, DecodeError> {
    if flags & flag == 0 {
        return Ok(None);
    }
    wire::get_u8(buf, what).map(Some)
}

impl BasicProperties {
    /// Reads the flags word and the present properties from the front of `buf`.
    pub fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let f = wire::get_u16(buf, "property flags")?;
        Ok(BasicProperties {
            content_type: opt_shortstr(buf, f, CONTENT_TYPE, "content-type")?,
            content_encoding: opt_shortstr(buf, f, CONTENT_ENCODING, "content-encoding")?,
            headers: if f & HEADERS != 0 {
                Some(FieldTable::decode(buf)?)
            } else {
                None
            },
            delivery_mode: opt_u8(buf, f, DELIVERY_MODE, "delivery-mode")?,
            priority: opt_u8(buf, f, PRIORITY, "priority")?,
            correlation_id: opt_shortstr(buf, f, CORRELATION_ID, "correlation-id")?,
            reply_to: opt_shortstr(buf, f, REPLY_TO, "reply-to")?,
            expiration: opt_shortstr(buf, f, EXPIRATION, "expiration")?,
            message_id: opt_shortstr(buf, f, MESSAGE_ID, "message-id")?,
            timestamp: if f & TIMESTAMP != 0 {
                Some(wire::get_u64(buf, "timestamp")?)
            } else {
                None
            },
            kind: opt_shortstr(buf, f, TYPE, "type")?,
            user_id: opt_shortstr(buf, f, USER_ID, "user-id")?,
            app_id: opt_shortstr(buf, f, APP_ID, "app-id")?,
            cluster_id: opt_shortstr(buf, f, CLUSTER_ID, "cluster-id")?,
        })
    }

    /// The property flags word for the properties that are present.
    pub fn flags(&self) -> u16 {
        let mut f = 0;
        let mut set = |present: bool, flag: u16| {
            if present {
                f |= flag;
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), TYPE);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        f
    }

    /// Appends the flags word and the present properties to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.flags());
        let s = |out: &mut BytesMut, v: &Option<String>| {
            if let Some(v) = v {
                wire::put_shortstr(out, v);
            }
        };
        s(out, &self.content_type);
        s(out, &self.content_encoding);
        if let Some(h) = &self.headers {
            h.encode(out);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        s(out, &self.correlation_id);
        s(out, &self.reply_to);
        s(out, &self.expiration);
        s(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        s(out, &self.kind);
        s(out, &self.user_id);
        s(out, &self.app_id);
        s(out, &self.cluster_id);
    }
}

/// A content header frame payload.
///
/// Decoding reads the properties in the basic-class layout whatever `class_id` says;
/// checking that `class_id` matches the preceding content method (RabbitMQ answers a
/// mismatch with 505 UNEXPECTED_FRAME) is the listener's job. `weight` is unused by
/// AMQP 0-9-1 and carried as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    /// Class of the content method this header belongs to (60 for basic).
    pub class_id: u16,
    /// Unused, must be zero.
    pub weight: u16,
    /// Total size of the content body that follows in body frames.
    pub body_size: u64,
    /// The message properties.
    pub properties: BasicProperties,
}

impl ContentHeader {
    /// Decodes a whole header-frame payload. Fails on a short payload or bytes after
    /// the last present property.
    pub fn decode(mut payload: Bytes) -> Result<Self, DecodeError> {
        let class_id = wire::get_u16(&mut payload, "content header class id")?;
        let weight = wire::get_u16(&mut payload, "content header weight")?;
        let body_size = wire::get_u64(&mut payload, "content header body size")?;
        let properties = BasicProperties::decode(&mut payload)?;
        if !payload.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(ContentHeader {
            class_id,
            weight,
            body_size,
            properties,
        })
    }

    /// Appends the header payload (no frame envelope) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id);
        out.put_u16(self.weight);
        out.put_u64(self.body_size);
        self.properties.encode(out);
    }
}
