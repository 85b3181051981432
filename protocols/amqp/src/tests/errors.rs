//! Every `DecodeError` variant from a hand-made input, with its reply code.

use bytes::{Bytes, BytesMut};

use crate::constants::{FRAME_ERROR, NOT_IMPLEMENTED};
use crate::error::DecodeError;
use crate::frame::decode_frame;
use crate::properties::ContentHeader;
use crate::table::{FieldTable, MAX_DEPTH};

fn frame_err(bytes: &[u8], frame_max: u32) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    decode_frame(&mut buf, frame_max).unwrap_err()
}

/// A method frame on channel 1 around `payload`.
fn method_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![1, 0, 1];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(0xCE);
    v
}

#[test]
fn bad_frame_end() {
    let e = frame_err(&[8, 0, 0, 0, 0, 0, 0, 0x00], 0);
    assert_eq!(e, DecodeError::BadFrameEnd(0));
    assert_eq!(e.reply_code(), FRAME_ERROR);
}

#[test]
fn frame_too_large_fails_before_the_payload_arrives() {
    // Only the 7-byte header: a 4 GB declared body must fail at once.
    let e = frame_err(&[3, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF], 131_072);
    assert_eq!(
        e,
        DecodeError::FrameTooLarge {
            size: u32::MAX,
            max: 131_072
        }
    );
    assert_eq!(e.reply_code(), FRAME_ERROR);
    // Exactly frame_max in total is fine (waits for bytes), one more is not.
    let mut ok = BytesMut::from(&[3, 0, 1, 0, 0, 0x0F, 0xF8][..]);
    assert_eq!(decode_frame(&mut ok, 4096), Ok(None));
    let e = frame_err(&[3, 0, 1, 0, 0, 0x0F, 0xF9], 4096);
    assert_eq!(
        e,
        DecodeError::FrameTooLarge {
            size: 4089,
            max: 4096
        }
    );
}

#[test]
fn unknown_frame_type() {
    let e = frame_err(&[4, 0, 0, 0, 0, 0, 0], 0);
    assert_eq!(e, DecodeError::UnknownFrameType(4));
    assert_eq!(e.reply_code(), FRAME_ERROR);
}

#[test]
fn heartbeat_with_payload() {
    let e = frame_err(&[8, 0, 0, 0, 0, 0, 1, 0, 0xCE], 0);
    assert_eq!(e, DecodeError::BadHeartbeat(1));
    assert_eq!(e.reply_code(), FRAME_ERROR);
}

#[test]
fn unknown_method() {
    let e = frame_err(&method_frame(&[0, 10, 0, 99]), 0);
    assert_eq!(
        e,
        DecodeError::UnknownMethod {
            class_id: 10,
            method_id: 99
        }
    );
    assert_eq!(e.reply_code(), NOT_IMPLEMENTED);
    let e = frame_err(&method_frame(&[0, 11, 0, 10]), 0);
    assert_eq!(e.reply_code(), NOT_IMPLEMENTED);
}

#[test]
fn truncated() {
    // basic.ack with 3 of its 9 argument bytes.
    let e = frame_err(&method_frame(&[0, 60, 0, 80, 0, 0, 0]), 0);
    assert_eq!(e, DecodeError::Truncated("basic.ack delivery-tag"));
    assert_eq!(e.reply_code(), FRAME_ERROR);
    // Payload too short for the method header itself.
    let e = frame_err(&method_frame(&[0, 60, 0]), 0);
    assert_eq!(e, DecodeError::Truncated("method id"));
    // Header frame too short for its fixed fields.
    let e = frame_err(&[2, 0, 1, 0, 0, 0, 3, 0, 60, 0, 0xCE], 0);
    assert!(matches!(e, DecodeError::Truncated(_)), "{e:?}");
    // A shortstr claiming more bytes than there are.
    let e = frame_err(&method_frame(&[0, 60, 0, 31, 5, b'a']), 0);
    assert_eq!(e, DecodeError::Truncated("basic.cancel_ok consumer-tag"));
}

#[test]
fn table_claiming_4gb_fails_fast() {
    let mut buf = Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0]);
    assert_eq!(
        FieldTable::decode(&mut buf),
        Err(DecodeError::Truncated("field table"))
    );
}

#[test]
fn invalid_utf8() {
    let e = frame_err(&method_frame(&[0, 60, 0, 31, 1, 0xFF]), 0);
    assert_eq!(e, DecodeError::InvalidUtf8);
    assert_eq!(e.reply_code(), FRAME_ERROR);
    // In a table key too.
    let mut buf = Bytes::from_static(&[0, 0, 0, 3, 1, 0xC3, b'V']);
    assert_eq!(FieldTable::decode(&mut buf), Err(DecodeError::InvalidUtf8));
}

#[test]
fn bad_field_type() {
    let mut buf = Bytes::from_static(&[0, 0, 0, 3, 1, b'k', b'Z']);
    let e = FieldTable::decode(&mut buf).unwrap_err();
    assert_eq!(e, DecodeError::BadFieldType(b'Z'));
    assert_eq!(e.reply_code(), FRAME_ERROR);
}

/// `depth` arrays nested inside each other, as a table value `k`.
fn nested_arrays(depth: usize) -> Bytes {
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![b'A'];
        outer.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    let mut table = vec![1, b'k'];
    table.extend_from_slice(&inner);
    let mut v = (table.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&table);
    Bytes::from(v)
}

#[test]
fn too_deep() {
    // The outer table is depth 1, so MAX_DEPTH - 1 nested arrays are fine.
    assert!(FieldTable::decode(&mut nested_arrays(MAX_DEPTH - 1)).is_ok());
    let e = FieldTable::decode(&mut nested_arrays(MAX_DEPTH)).unwrap_err();
    assert_eq!(e, DecodeError::TooDeep);
    assert_eq!(e.reply_code(), FRAME_ERROR);
    // Far deeper than the stack could take without the limit.
    assert_eq!(
        FieldTable::decode(&mut nested_arrays(100_000)),
        Err(DecodeError::TooDeep)
    );
}

#[test]
fn trailing_bytes() {
    // tx.select takes no arguments.
    let e = frame_err(&method_frame(&[0, 90, 0, 10, 0]), 0);
    assert_eq!(e, DecodeError::TrailingBytes);
    assert_eq!(e.reply_code(), FRAME_ERROR);
    // A content header with a byte after its (absent) properties.
    let payload = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 9]);
    assert_eq!(
        ContentHeader::decode(payload),
        Err(DecodeError::TrailingBytes)
    );
}

#[test]
fn malformed_header_frame_fails() {
    // Flags say content-type is present but the payload ends.
    let e = frame_err(
        &[
            2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0xCE,
        ],
        0,
    );
    assert_eq!(e, DecodeError::Truncated("content-type"));
}
