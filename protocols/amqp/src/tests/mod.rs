#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Unit and property tests for the whole codec: golden bytes, every error, round trips.

mod errors;
mod golden;
mod perf;
mod roundtrip;
mod values;

use bytes::BytesMut;

use crate::frame::{decode_frame, Frame};

/// Decodes every frame in `bytes` (no frame_max), failing on leftovers or errors.
pub(super) fn decode_all(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = decode_frame(&mut buf, 0).expect("valid frame stream") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "leftover bytes: {buf:?}");
    frames
}
