//! Checked primitive reads and writes shared by every codec module.
//!
//! Reads take `&mut Bytes`, check the remaining length first and return
//! [`DecodeError::Truncated`] instead of panicking; `what` names the field for the error.
//! Long strings are returned as zero-copy slices of the input. Writes append to a
//! `BytesMut`; a short string longer than 255 bytes is clamped (see [`put_shortstr`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Reads one octet.
#[inline]
pub(crate) fn get_u8(buf: &mut Bytes, what: &'static str) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u8())
}

/// Reads a big-endian u16.
#[inline]
pub(crate) fn get_u16(buf: &mut Bytes, what: &'static str) -> Result<u16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u16())
}

/// Reads a big-endian u32.
#[inline]
pub(crate) fn get_u32(buf: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    if buf.remaining() < 4 {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u32())
}

/// Reads a big-endian u64.
#[inline]
pub(crate) fn get_u64(buf: &mut Bytes, what: &'static str) -> Result<u64, DecodeError> {
    if buf.remaining() < 8 {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u64())
}

/// Splits `len` bytes off the front (zero-copy), checking the length first.
#[inline]
pub(crate) fn get_slice(
    buf: &mut Bytes,
    len: usize,
    what: &'static str,
) -> Result<Bytes, DecodeError> {
    if buf.remaining() < len {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.split_to(len))
}

/// Reads a short string (u8 length + UTF-8 bytes) into an owned `String`.
#[inline]
pub(crate) fn get_shortstr(buf: &mut Bytes, what: &'static str) -> Result<String, DecodeError> {
    let len = usize::from(get_u8(buf, what)?);
    if len == 0 {
        // No zero-length copy (see `put_bytes`).
        return Ok(String::new());
    }
    let bytes = buf.get(..len).ok_or(DecodeError::Truncated(what))?;
    let s = std::str::from_utf8(bytes)
        .map_err(|_| DecodeError::InvalidUtf8)?
        .to_owned();
    buf.advance(len);
    Ok(s)
}

/// Reads a long string (u32 length + bytes) as a zero-copy slice.
#[inline]
pub(crate) fn get_longstr(buf: &mut Bytes, what: &'static str) -> Result<Bytes, DecodeError> {
    let len = get_u32(buf, what)? as usize;
    get_slice(buf, len, what)
}

/// Largest prefix of `s` that fits a short string (at most 255 bytes, cut at a char boundary).
///
/// Encoding a longer short string is a caller bug: it trips a `debug_assert!` in debug
/// builds and is clamped (never a panic) in release builds, so the output stays a
/// well-formed frame with valid UTF-8.
#[inline]
pub(crate) fn clamp_shortstr(s: &str) -> &[u8] {
    if s.len() <= 255 {
        return s.as_bytes();
    }
    debug_assert!(
        s.len() <= 255,
        "AMQP shortstr longer than 255 bytes ({})",
        s.len()
    );
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.as_bytes().get(..end).unwrap_or_default()
}

/// Appends `bytes`, skipping the call when there are none.
///
/// An empty slice has a dangling pointer, and glibc's AVX-512 `memcpy` still issues a
/// masked load from it; the fault suppression costs a microcode assist per call, which
/// profiles showed on every default-exchange (empty name) message.
#[inline]
pub(crate) fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    if !bytes.is_empty() {
        out.put_slice(bytes);
    }
}

/// Writes a short string (u8 length + bytes), clamped as [`clamp_shortstr`] says.
#[inline]
pub(crate) fn put_shortstr(out: &mut BytesMut, s: &str) {
    let bytes = clamp_shortstr(s);
    out.put_u8(bytes.len() as u8);
    put_bytes(out, bytes);
}

/// Writes a long string (u32 length + bytes). A value over 4 GiB is clamped like a
/// short string (debug assertion, then truncation), since it cannot be framed anyway.
#[inline]
pub(crate) fn put_longstr(out: &mut BytesMut, b: &[u8]) {
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    debug_assert!(b.len() <= u32::MAX as usize, "AMQP longstr over 4 GiB");
    out.put_u32(len);
    put_bytes(out, b.get(..len as usize).unwrap_or(b));
}

/// Reserves a u32 length slot and returns its position, for [`patch_len`].
#[inline]
pub(crate) fn begin_len(out: &mut BytesMut) -> usize {
    let pos = out.len();
    out.put_u32(0);
    pos
}

/// Writes into the slot made by [`begin_len`] the number of bytes written after it.
#[inline]
pub(crate) fn patch_len(out: &mut BytesMut, pos: usize) {
    let len = out.len() - pos - 4;
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(pos..pos + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}
