//! Hand-written encoders for the per-message hot path: complete `basic.deliver` and
//! `basic.publish` method frames written straight from borrowed strings, with no
//! `Method` value and no `String` built. Byte-for-byte the same as
//! [`crate::frame::encode_method_frame`] on the equivalent [`super::Method`].

use bytes::{BufMut, BytesMut};

use super::{BasicDeliver, BasicPublish};
use crate::constants::{FRAME_END, FRAME_METHOD};
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
    out.put_slice(consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    out.put_u8(exchange.len() as u8);
    out.put_slice(exchange);
    out.put_u8(routing_key.len() as u8);
    out.put_slice(routing_key);
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
    out.put_slice(exchange);
    out.put_u8(routing_key.len() as u8);
    out.put_slice(routing_key);
    out.put_u8(u8::from(mandatory) | (u8::from(immediate) << 1));
    out.put_u8(FRAME_END);
}
