//! Throughput smoke test, ignored by default. Run with
//! `cargo test -p warren-mqtt --release -- --ignored --nocapture perf`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::*;

#[test]
#[ignore = "timing only"]
fn perf_encode_decode_publishes() {
    const N: usize = 500_000;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let publish = Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: "sensors/kitchen/temp".into(),
            packet_id: 1,
            payload: Bytes::from_static(&[7u8; 100]),
            properties: PublishProperties {
                content_type: Some("application/json".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let codec = connected(version);
        let t = Instant::now();
        let mut out = BytesMut::with_capacity(N * 140);
        for _ in 0..N {
            codec.encode(&publish, &mut out).unwrap();
        }
        let enc = t.elapsed();
        let t = Instant::now();
        let mut decoder = connected(version);
        let mut n = 0;
        while let Some(p) = decoder.decode(&mut out).unwrap() {
            assert!(matches!(p, Packet::Publish(_)));
            n += 1;
        }
        let dec = t.elapsed();
        assert_eq!(n, N);
        println!(
            "{version:?}: encode {:.0} k publishes/s, decode {:.0} k publishes/s",
            N as f64 / enc.as_secs_f64() / 1e3,
            N as f64 / dec.as_secs_f64() / 1e3
        );
    }
}
