//! Throughput smoke test, ignored by default. Run with
//! `cargo test -p warren-amqp --release -- --ignored --nocapture perf`.

use std::time::Instant;

use bytes::BytesMut;

use crate::frame::{decode_frame, encode_body_frames, encode_header_frame};
use crate::method::{encode_basic_deliver_frame, encode_basic_publish_frame};
use crate::properties::{BasicProperties, ContentHeader};

#[test]
#[ignore = "timing only"]
fn perf_encode_decode_messages() {
    const N: usize = 300_000;
    let header = ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: 100,
        properties: BasicProperties {
            content_type: Some("application/json".into()),
            delivery_mode: Some(2),
            ..Default::default()
        },
    };
    let body = [7u8; 100];
    let t = Instant::now();
    let mut out = BytesMut::with_capacity(N * 200);
    for i in 0..N {
        encode_basic_deliver_frame(
            1,
            "amq.ctag-1",
            i as u64,
            false,
            "amq.topic",
            "a.b.c",
            &mut out,
        );
        encode_header_frame(1, &header, &mut out);
        encode_body_frames(1, &body, 131_072, &mut out);
    }
    let enc = t.elapsed();
    let mut publish = BytesMut::with_capacity(N * 200);
    for _ in 0..N {
        encode_basic_publish_frame(1, "amq.topic", "a.b.c", false, false, &mut publish);
        encode_header_frame(1, &header, &mut publish);
        encode_body_frames(1, &body, 131_072, &mut publish);
    }
    let t = Instant::now();
    let mut frames = 0;
    while let Some(_f) = decode_frame(&mut publish, 131_072).unwrap() {
        frames += 1;
    }
    let dec = t.elapsed();
    assert_eq!(frames, 3 * N);
    let per_s = |d: std::time::Duration| (3 * N) as f64 / d.as_secs_f64() / 1e6;
    println!(
        "encode {:.1} M frames/s, decode {:.1} M frames/s",
        per_s(enc),
        per_s(dec)
    );
}
