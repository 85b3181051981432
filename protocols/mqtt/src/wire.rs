//! Wire primitives: a bounds-checked reader over one packet's bytes and the matching writers.
//!
//! Every read checks the remaining length first, so no input can make it panic, and every
//! length the peer declares is checked against the bytes actually present before anything
//! is sliced or allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};

/// Largest value of a Variable Byte Integer (MQTT 5.0 §1.5.5).
pub(crate) const MAX_VARINT: usize = 268_435_455;

/// A cursor over the body (variable header + payload) of one packet.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails with `Malformed(what)` unless at least `n` bytes remain.
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Malformed(what))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    /// A Variable Byte Integer of at most 4 bytes.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let byte = self.u8(what)?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedRemainingLength)
    }

    /// The next `n` bytes as a zero-copy slice.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    /// A sub-reader over the next `n` bytes (a property block).
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.take(n, what)?))
    }

    /// Binary Data: a two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.take(len, what)
    }

    /// UTF-8 Encoded String: well-formed UTF-8 without U+0000 [MQTT-1.5.3-1, -2]. Rust's
    /// UTF-8 check already rejects surrogates (U+D800..U+DFFF) and overlong encodings.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.binary(what)?;
        let s = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok(s.to_owned())
    }

    /// Everything left (the PUBLISH payload).
    pub(crate) fn rest(self) -> Bytes {
        self.buf
    }

    /// Fails unless the packet has been read to its end.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(what))
        }
    }
}

/// Whether a decoded string is valid MQTT UTF-8 (used on strings mqttbytes decoded, which
/// lets U+0000 through).
pub(crate) fn check_mqtt_str(s: &str) -> Result<(), DecodeError> {
    if s.contains('\0') {
        Err(DecodeError::InvalidUtf8)
    } else {
        Ok(())
    }
}

/// Bytes a Variable Byte Integer of `value` takes (1..=4; callers check `value` first).
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Encoded length of a string / binary field, checking the 65,535-byte limit.
pub(crate) fn field_len(len: usize) -> Result<usize, EncodeError> {
    if len > usize::from(u16::MAX) {
        Err(EncodeError::StringTooLong(len))
    } else {
        Ok(2 + len)
    }
}

/// Writes a string / binary field; the caller has checked the length with [`field_len`].
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

/// Total size of a packet with this remaining length, checking the protocol maximum.
pub(crate) fn packet_len(remaining: usize) -> Result<usize, EncodeError> {
    if remaining > MAX_VARINT {
        Err(EncodeError::RemainingLengthTooLarge(remaining))
    } else {
        Ok(1 + varint_len(remaining) + remaining)
    }
}
