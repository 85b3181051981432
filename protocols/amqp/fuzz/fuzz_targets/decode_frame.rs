//! Feeds arbitrary bytes through `decode_frame` (frame_max 131072, RabbitMQ's default)
//! until it stops; every decoded frame must re-encode to bytes that decode to a frame
//! which encodes to the same bytes (compared as bytes so NaN floats compare equal).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_amqp::decode_frame;

const FRAME_MAX: u32 = 131_072;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buf, FRAME_MAX) {
        let mut first = BytesMut::new();
        frame.encode(&mut first);
        let mut again = first.clone();
        let decoded = decode_frame(&mut again, FRAME_MAX)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is complete");
        assert!(again.is_empty(), "re-encoded frame has leftover bytes");
        let mut second = BytesMut::new();
        decoded.encode(&mut second);
        assert_eq!(first, second, "encode(decode(encode(frame))) differs");
        assert_eq!(frame.channel(), decoded.channel());
    }
});
