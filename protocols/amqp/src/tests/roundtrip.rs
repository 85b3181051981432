//! Property tests: decode(encode(x)) == x for every codec type, no panics on arbitrary
//! bytes, and chunking-independence of the frame decoder.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use crate::frame::{decode_frame, Frame};
use crate::method::arb::arb_method;
use crate::method::Method;
use crate::properties::{BasicProperties, ContentHeader};
use crate::table::{FieldTable, FieldValue};
use crate::testutil::{arb_field_value, arb_header, arb_properties, arb_table};

/// Any frame, as `decode_frame` would produce it (`raw` consistent with `header`).
fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u16>(), arb_method())
            .prop_map(|(channel, method)| Frame::Method { channel, method }),
        (any::<u16>(), arb_header()).prop_map(|(channel, header)| {
            let mut raw = BytesMut::new();
            header.encode(&mut raw);
            Frame::Header {
                channel,
                header: Box::new(header),
                raw: raw.freeze(),
            }
        }),
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..2000)
        )
            .prop_map(|(channel, p)| Frame::Body {
                channel,
                payload: Bytes::from(p)
            }),
        any::<u16>().prop_map(|channel| Frame::Heartbeat { channel }),
    ]
}

fn encode_frames(frames: &[Frame]) -> BytesMut {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out);
    }
    out
}

proptest! {
    #[test]
    fn field_value_round_trip(v in arb_field_value()) {
        let mut out = BytesMut::new();
        v.encode(&mut out);
        let mut buf = out.freeze();
        prop_assert_eq!(FieldValue::decode(&mut buf), Ok(v));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn field_table_round_trip(t in arb_table()) {
        let mut out = BytesMut::new();
        t.encode(&mut out);
        let mut buf = out.freeze();
        prop_assert_eq!(FieldTable::decode(&mut buf), Ok(t));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn properties_round_trip(p in arb_properties()) {
        let mut out = BytesMut::new();
        p.encode(&mut out);
        let mut buf = out.freeze();
        prop_assert_eq!(BasicProperties::decode(&mut buf), Ok(p));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn content_header_round_trip(h in arb_header()) {
        let mut out = BytesMut::new();
        h.encode(&mut out);
        prop_assert_eq!(ContentHeader::decode(out.freeze()), Ok(h));
    }

    #[test]
    fn method_round_trip(m in arb_method()) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        prop_assert_eq!(Method::decode(out.freeze()), Ok(m));
    }

    #[test]
    fn frame_round_trip(f in arb_frame()) {
        let mut out = encode_frames(std::slice::from_ref(&f));
        prop_assert_eq!(decode_frame(&mut out, 0), Ok(Some(f)));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), max in any::<u32>()) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf, max) {}
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(
        frames in proptest::collection::vec(arb_frame(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode_frames(&frames).to_vec();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf, 131_072) {}
    }

    #[test]
    fn chunking_does_not_matter(
        frames in proptest::collection::vec(arb_frame(), 1..6),
        cuts in proptest::collection::vec(1usize..300, 0..40),
    ) {
        let stream = encode_frames(&frames).to_vec();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut cuts = cuts.into_iter();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = decode_frame(&mut buf, 0).unwrap() {
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }
}

proptest! {
    /// The hot-path decoder of basic.publish / basic.ack must agree with the generated one
    /// on every payload, well-formed or not (same method, same error).
    #[test]
    fn hot_method_decoder_matches_generic(
        ack in any::<bool>(),
        args in proptest::collection::vec(any::<u8>(), 0..40),
        ascii in any::<bool>(),
    ) {
        let mut payload = if ack { vec![0, 60, 0, 80] } else { vec![0, 60, 0, 40] };
        payload.extend(args.iter().map(|b| if ascii { b % 0x60 + 0x20 } else { *b }));
        let hot = crate::method::decode_hot_method(&payload);
        prop_assert_eq!(hot, Some(Method::decode(Bytes::from(payload))));
    }
}

proptest! {
    /// Whenever the in-place publish reader accepts a frame, the generic decoder reads the
    /// same basic.publish from it, and a well-formed publish frame is always accepted.
    #[test]
    fn peek_basic_publish_agrees_with_decode_frame(
        channel in any::<u16>(),
        exchange in "[a-z.]{0,20}",
        routing_key in "[a-z0-9.]{0,40}",
        mandatory in any::<bool>(),
        immediate in any::<bool>(),
        noise in proptest::collection::vec(any::<u8>(), 0..24),
        cut in any::<proptest::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        crate::method::encode_basic_publish_frame(channel, &exchange, &routing_key, mandatory, immediate, &mut wire);
        let peeked = crate::method::peek_basic_publish(&wire, 0).expect("a publish frame is read");
        prop_assert_eq!(
            (peeked.channel, peeked.exchange, peeked.routing_key, peeked.mandatory, peeked.immediate, peeked.frame_len),
            (channel, exchange.as_str(), routing_key.as_str(), mandatory, immediate, wire.len())
        );
        // Corrupt one byte of the frame: whatever the reader still accepts, decode_frame agrees.
        let mut bad = wire.to_vec();
        let at = cut.index(bad.len());
        bad[at] = noise.first().copied().unwrap_or(0);
        if let Some(peeked) = crate::method::peek_basic_publish(&bad, 0) {
            let mut buf = BytesMut::from(&bad[..]);
            let frame = decode_frame(&mut buf, 0);
            let Ok(Some(Frame::Method { channel, method: Method::BasicPublish(p) })) = frame else {
                return Err(TestCaseError::fail(format!("peeked {peeked:?}, decode_frame gave {frame:?}")));
            };
            prop_assert_eq!(
                (channel, p.exchange.as_str(), p.routing_key.as_str(), p.mandatory, p.immediate),
                (peeked.channel, peeked.exchange, peeked.routing_key, peeked.mandatory, peeked.immediate)
            );
        }
    }
}
