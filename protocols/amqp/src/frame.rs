//! Frames: decoding from a byte stream and encoding (AMQP §2.3.5, §4.2.3).
//!
//! A frame is `type (u8), channel (u16), payload size (u32), payload, 0xCE`.
//!
//! Call order for a connection: after the 8-byte protocol header (see
//! [`crate::constants::PROTOCOL_HEADER`]) append socket reads to a `BytesMut` and call
//! [`decode_frame`] until it returns `Ok(None)`; then read more. Each call is O(frame)
//! and makes one pass; body and long-string data are zero-copy slices of the buffer.
//! On `Err` close the connection with [`DecodeError::reply_code`]; the buffer is then in
//! an unspecified state.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::constants::{
    FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEADER_SIZE, FRAME_HEARTBEAT, FRAME_METHOD,
    FRAME_OVERHEAD,
};
use crate::error::DecodeError;
use crate::method::Method;
use crate::properties::ContentHeader;
use crate::wire;

/// One decoded frame.
///
/// The content header is boxed: inline, its 14 properties made every frame 344 bytes, and
/// the copies of that as frames moved from decoder to handler cost more than one allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method frame.
    Method {
        /// Channel number (0 for connection-class methods).
        channel: u16,
        /// The decoded method.
        method: Method,
    },
    /// A content header frame.
    ///
    /// `raw` is the whole undecoded header-frame payload (class id .. properties), kept
    /// so a broker can forward it to consumers without re-encoding.
    Header {
        /// Channel number.
        channel: u16,
        /// The decoded header.
        header: Box<ContentHeader>,
        /// The undecoded payload `header` was decoded from. [`Frame::encode`] writes it
        /// as is when non-empty, else encodes `header`.
        raw: Bytes,
    },
    /// A content body frame; `payload` is a zero-copy slice of the input buffer.
    Body {
        /// Channel number.
        channel: u16,
        /// Body bytes carried by this frame.
        payload: Bytes,
    },
    /// A heartbeat frame (valid only on channel 0; the listener checks that, as RabbitMQ
    /// answers a heartbeat on another channel with 505 UNEXPECTED_FRAME).
    Heartbeat {
        /// Channel number as received.
        channel: u16,
    },
}

/// Decodes one frame from the front of `buf`.
///
/// `Ok(None)` = need more bytes (buf untouched). On `Ok(Some)` the frame's bytes are
/// consumed. `frame_max` is the negotiated max total frame size including the 8 bytes
/// of overhead (0 = no limit); a declared payload size over it is an error right away
/// (no waiting for the bytes, no allocation by declared size), as is an unknown frame
/// type.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, DecodeError> {
    let Some(head) = buf.get(..FRAME_HEADER_SIZE) else {
        return Ok(None);
    };
    let mut head: &[u8] = head;
    let kind = head.get_u8();
    let channel = head.get_u16();
    let size = head.get_u32();
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(DecodeError::UnknownFrameType(kind));
    }
    if frame_max != 0 && u64::from(size) + FRAME_OVERHEAD as u64 > u64::from(frame_max) {
        return Err(DecodeError::FrameTooLarge {
            size,
            max: frame_max,
        });
    }
    let size = size as usize;
    // Cannot overflow on 64-bit targets; on 32-bit a 4 GB frame simply never completes.
    let Some(end_at) = FRAME_HEADER_SIZE.checked_add(size) else {
        return Ok(None);
    };
    let Some(&end) = buf.get(end_at) else {
        return Ok(None);
    };
    if end != FRAME_END {
        return Err(DecodeError::BadFrameEnd(end));
    }
    if kind == FRAME_METHOD {
        if let Some(method) = buf
            .get(FRAME_HEADER_SIZE..end_at)
            .and_then(crate::method::decode_hot_method)
        {
            let method = method?;
            buf.advance(end_at + 1);
            return Ok(Some(Frame::Method { channel, method }));
        }
    }
    let mut frame = buf.split_to(end_at + 1);
    frame.advance(FRAME_HEADER_SIZE);
    frame.truncate(size);
    let payload = frame.freeze();
    let frame = match kind {
        FRAME_METHOD => Frame::Method {
            channel,
            method: Method::decode(payload)?,
        },
        FRAME_HEADER => Frame::Header {
            channel,
            header: Box::new(ContentHeader::decode(payload.clone())?),
            raw: payload,
        },
        FRAME_BODY => Frame::Body { channel, payload },
        _ => {
            if !payload.is_empty() {
                return Err(DecodeError::BadHeartbeat(size as u32));
            }
            Frame::Heartbeat { channel }
        }
    };
    Ok(Some(frame))
}

impl Frame {
    /// The channel the frame was sent on.
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. }
            | Frame::Heartbeat { channel } => *channel,
        }
    }

    /// Appends the complete frame (envelope included) to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Method { channel, method } => encode_method_frame(*channel, method, out),
            Frame::Header {
                channel,
                header,
                raw,
            } => {
                if raw.is_empty() {
                    encode_header_frame(*channel, header, out)
                } else {
                    encode_raw_header_frame(*channel, raw, out)
                }
            }
            Frame::Body { channel, payload } => put_frame(out, FRAME_BODY, *channel, payload),
            Frame::Heartbeat { channel } => put_frame(out, FRAME_HEARTBEAT, *channel, &[]),
        }
    }
}

/// Writes a frame around an already encoded payload.
#[inline]
fn put_frame(out: &mut BytesMut, kind: u8, channel: u16, payload: &[u8]) {
    debug_assert!(
        payload.len() <= u32::MAX as usize,
        "frame payload over 4 GiB"
    );
    out.reserve(payload.len() + FRAME_OVERHEAD);
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
}

/// Writes a frame whose payload `body` encodes in place (size patched afterwards).
#[inline]
fn put_frame_with(out: &mut BytesMut, kind: u8, channel: u16, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(kind);
    out.put_u16(channel);
    let pos = wire::begin_len(out);
    body(out);
    wire::patch_len(out, pos);
    out.put_u8(FRAME_END);
}

/// Appends a complete method frame to `out`.
pub fn encode_method_frame(channel: u16, method: &Method, out: &mut BytesMut) {
    put_frame_with(out, FRAME_METHOD, channel, |out| method.encode(out));
}

/// Appends a complete content header frame to `out`.
pub fn encode_header_frame(channel: u16, header: &ContentHeader, out: &mut BytesMut) {
    put_frame_with(out, FRAME_HEADER, channel, |out| header.encode(out));
}

/// Appends a content header frame around an already encoded header payload (e.g. the
/// `raw` of a received [`Frame::Header`]) to `out`.
pub fn encode_raw_header_frame(channel: u16, raw_payload: &[u8], out: &mut BytesMut) {
    put_frame(out, FRAME_HEADER, channel, raw_payload);
}

/// Writes body frames, each at most frame_max bytes in total (payload <= frame_max - 8);
/// empty body -> no frame.
///
/// `frame_max` 0 means no limit (payloads up to `u32::MAX` bytes). A `frame_max` of 8
/// or less cannot carry a body; it trips a `debug_assert!` and is treated as 9 (one
/// byte per frame) so release builds never loop forever or panic.
pub fn encode_body_frames(channel: u16, body: &[u8], frame_max: u32, out: &mut BytesMut) {
    if body.is_empty() {
        return;
    }
    let max_payload = if frame_max == 0 {
        u32::MAX as usize
    } else {
        debug_assert!(
            frame_max as usize > FRAME_OVERHEAD,
            "frame_max {frame_max} too small"
        );
        (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
    };
    let frames = body.len().div_ceil(max_payload);
    out.reserve(body.len() + frames * FRAME_OVERHEAD);
    for chunk in body.chunks(max_payload) {
        put_frame(out, FRAME_BODY, channel, chunk);
    }
}

/// Appends a heartbeat frame (channel 0, empty payload) to `out`.
pub fn encode_heartbeat_frame(out: &mut BytesMut) {
    put_frame(out, FRAME_HEARTBEAT, 0, &[]);
}
