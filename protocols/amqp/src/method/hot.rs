//! Hand-written encoders and decoders for the per-message hot path: complete `basic.deliver` and
//! `basic.publish` method frames written straight from borrowed strings, with no
//! `Method` value and no `String` built. Byte-for-byte the same as
//! [`crate::frame::encode_method_frame`] on the equivalent [`super::Method`].

use bytes::{BufMut, BytesMut};

use super::{BasicAck, BasicDeliver, BasicPublish, Method};
use crate::constants::{FRAME_END, FRAME_METHOD};
use crate::error::DecodeError;
use crate::wire;

/// Writes a complete `basic.deliver` METHOD frame (envelope included) to `out`.
///
/// Short strings over 255 bytes are clamped as [`super::Method::encode`] documents.
pub fn encode_basic_deliver_frame(
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
    out: &mut BytesMut,
) {
    let consumer_tag = wire::clamp_shortstr(consumer_tag);
    let exchange = wire::clamp_shortstr(exchange);
    let routing_key = wire::clamp_shortstr(routing_key);
    // class + method ids, three shortstrs with their length octets, u64, bit octet.
    let size = 4 + 3 + consumer_tag.len() + exchange.len() + routing_key.len() + 8 + 1;
    out.reserve(size + 8);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(size as u32);
    out.put_u16(BasicDeliver::CLASS_ID);
    out.put_u16(BasicDeliver::METHOD_ID);
    out.put_u8(consumer_tag.len() as u8);
    wire::put_bytes(out, consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    out.put_u8(exchange.len() as u8);
    wire::put_bytes(out, exchange);
    out.put_u8(routing_key.len() as u8);
    wire::put_bytes(out, routing_key);
    out.put_u8(FRAME_END);
}

/// Writes a complete `basic.publish` METHOD frame (envelope included, ticket 0) to `out`.
///
/// Short strings over 255 bytes are clamped as [`super::Method::encode`] documents.
pub fn encode_basic_publish_frame(
    channel: u16,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
    immediate: bool,
    out: &mut BytesMut,
) {
    let exchange = wire::clamp_shortstr(exchange);
    let routing_key = wire::clamp_shortstr(routing_key);
    // class + method ids, ticket, two shortstrs with their length octets, bit octet.
    let size = 4 + 2 + 2 + exchange.len() + routing_key.len() + 1;
    out.reserve(size + 8);
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(size as u32);
    out.put_u16(BasicPublish::CLASS_ID);
    out.put_u16(BasicPublish::METHOD_ID);
    out.put_u16(0);
    out.put_u8(exchange.len() as u8);
    wire::put_bytes(out, exchange);
    out.put_u8(routing_key.len() as u8);
    wire::put_bytes(out, routing_key);
    out.put_u8(u8::from(mandatory) | (u8::from(immediate) << 1));
    out.put_u8(FRAME_END);
}

/// Decodes the two methods every message crosses (`basic.publish`, `basic.ack`) straight
/// from the frame payload, without first splitting it off the input buffer; `None` for
/// any other method. Results and errors are the same as [`super::Method::decode`]'s.
pub(crate) fn decode_hot_method(payload: &[u8]) -> Option<Result<Method, DecodeError>> {
    let mut reader = SliceReader(payload);
    let class_id = reader.u16("method class id").ok()?;
    let method_id = reader.u16("method id").ok()?;
    let method = match (class_id, method_id) {
        (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID) => decode_publish(&mut reader),
        (BasicAck::CLASS_ID, BasicAck::METHOD_ID) => decode_ack(&mut reader),
        _ => return None,
    };
    Some(method.and_then(|method| {
        if reader.0.is_empty() {
            Ok(method)
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }))
}

fn decode_publish(reader: &mut SliceReader<'_>) -> Result<Method, DecodeError> {
    let ticket = reader.u16("basic.publish ticket")?;
    let exchange = reader.shortstr("basic.publish exchange")?;
    let routing_key = reader.shortstr("basic.publish routing-key")?;
    let bits = reader.u8("basic.publish mandatory")?;
    Ok(Method::BasicPublish(BasicPublish {
        ticket,
        exchange,
        routing_key,
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    }))
}

fn decode_ack(reader: &mut SliceReader<'_>) -> Result<Method, DecodeError> {
    let delivery_tag = reader.u64("basic.ack delivery-tag")?;
    let bits = reader.u8("basic.ack multiple")?;
    Ok(Method::BasicAck(BasicAck {
        delivery_tag,
        multiple: bits & 1 != 0,
    }))
}

/// A well-formed `basic.publish` method frame read in place (see [`peek_basic_publish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicPublishRef<'a> {
    /// The channel it was sent on.
    pub channel: u16,
    /// The exchange name.
    pub exchange: &'a str,
    /// The routing key.
    pub routing_key: &'a str,
    /// The mandatory flag.
    pub mandatory: bool,
    /// The immediate flag.
    pub immediate: bool,
    /// Bytes the whole frame takes at the front of the buffer: advance past them once the
    /// names are copied.
    pub frame_len: usize,
}

/// Reads the next frame of `buf` in place if it is a complete, well-formed `basic.publish`
/// method frame within `frame_max` (0 = no limit); `None` otherwise, leaving it to
/// [`crate::frame::decode_frame`] (which also reports any error).
///
/// Every message starts with this frame, and a broker can copy the two names into its own
/// (inline, small-string) type instead of allocating `String`s for them.
pub fn peek_basic_publish(buf: &[u8], frame_max: u32) -> Option<BasicPublishRef<'_>> {
    let head = buf.get(..7)?;
    if head[0] != FRAME_METHOD {
        return None;
    }
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if frame_max != 0 && u64::from(size) + 8 > u64::from(frame_max) {
        return None;
    }
    let end = 7usize.checked_add(size as usize)?;
    if buf.get(end) != Some(&FRAME_END) {
        return None;
    }
    let mut reader = SliceReader(buf.get(7..end)?);
    let ids = (reader.u16("").ok()?, reader.u16("").ok()?);
    if ids != (BasicPublish::CLASS_ID, BasicPublish::METHOD_ID) {
        return None;
    }
    let _ticket = reader.u16("").ok()?;
    let exchange = reader.shortstr_ref("").ok()?;
    let routing_key = reader.shortstr_ref("").ok()?;
    let bits = reader.u8("").ok()?;
    if !reader.0.is_empty() {
        return None;
    }
    Some(BasicPublishRef {
        channel,
        exchange,
        routing_key,
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
        frame_len: end + 1,
    })
}

/// Big-endian reads from a borrowed payload, with the generic decoder's error values.
struct SliceReader<'a>(&'a [u8]);

impl<'a> SliceReader<'a> {
    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(DecodeError::Truncated(what));
        };
        self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(what)?))
    }

    fn shortstr_ref(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = usize::from(self.u8(what)?);
        let Some((bytes, rest)) = self.0.split_at_checked(len) else {
            return Err(DecodeError::Truncated(what));
        };
        self.0 = rest;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    fn shortstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(what)?);
        let Some((bytes, rest)) = self.0.split_at_checked(len) else {
            return Err(DecodeError::Truncated(what));
        };
        self.0 = rest;
        if bytes.is_empty() {
            // No zero-length copy (see `wire::put_bytes`).
            return Ok(String::new());
        }
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }
}
