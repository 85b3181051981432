//! Criterion benchmarks of the hot paths, so regressions show up as numbers: AMQP frame
//! decode/encode of publish + header + body, MQTT PUBLISH decode/encode, and topic-exchange
//! routing with 10,000 bindings. Run with `cargo bench --bench hot_paths`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use warren::core::topic::TopicTrie;
use warren_amqp::frame::{decode_frame, encode_body_frames, encode_header_frame};
use warren_amqp::method::{
    encode_basic_deliver_frame, encode_basic_publish_frame, peek_basic_publish,
};
use warren_amqp::properties::{BasicProperties, ContentHeader};
use warren_mqtt::{Codec, Packet, ProtocolVersion, Publish, QoS};

fn amqp_publish_bytes(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_basic_publish_frame(
        1,
        "amq.topic",
        "sensors.kitchen.temp",
        false,
        false,
        &mut out,
    );
    encode_header_frame(
        1,
        &ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: body.len() as u64,
            properties: BasicProperties {
                content_type: Some("application/json".into()),
                delivery_mode: Some(2),
                ..BasicProperties::default()
            },
        },
        &mut out,
    );
    encode_body_frames(1, body, 131_072, &mut out);
    out
}

fn amqp(c: &mut Criterion) {
    let body = vec![7u8; 16];
    let wire = amqp_publish_bytes(&body);
    let mut group = c.benchmark_group("amqp");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode publish+header+body (16 B)", |b| {
        b.iter(|| {
            let mut buf = wire.clone();
            let mut frames = 0;
            while let Ok(Some(frame)) = decode_frame(&mut buf, 131_072) {
                black_box(frame);
                frames += 1;
            }
            assert_eq!(frames, 3);
        })
    });
    // What the broker does with the method frame of every publish: read it in place and copy
    // the names into inline strings (no buffer split, no Method, no String).
    group.bench_function("read basic.publish in place", |b| {
        b.iter(|| {
            let publish = peek_basic_publish(black_box(&wire), 131_072);
            let names: Option<(warren::core::ShortString, warren::core::ShortString, usize)> =
                publish.map(|p| (p.exchange.into(), p.routing_key.into(), p.frame_len));
            assert!(names.is_some(), "a publish frame");
            black_box(names)
        })
    });
    let header = ContentHeader {
        class_id: 60,
        weight: 0,
        body_size: 16,
        properties: BasicProperties::default(),
    };
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode deliver+header+body (16 B)", |b| {
        b.iter(|| {
            out.clear();
            encode_basic_deliver_frame(1, "ctag-1", 42, false, "", "queue-name", &mut out);
            encode_header_frame(1, &header, &mut out);
            encode_body_frames(1, &body, 131_072, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

fn mqtt(c: &mut Criterion) {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "sensors/kitchen/temp".into(),
        packet_id: 7,
        payload: Bytes::from(vec![1u8; 64]),
        properties: Default::default(),
    });
    let mut wire = BytesMut::new();
    let _ = Codec::encode_with(ProtocolVersion::V311, &publish, &mut wire);
    let mut group = c.benchmark_group("mqtt");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode PUBLISH QoS 1 (64 B)", |b| {
        // A codec past CONNECT decodes client packets; prime it once with a CONNECT.
        let mut connect = BytesMut::new();
        let _ = Codec::encode_with(
            ProtocolVersion::V311,
            &Packet::Connect(warren_mqtt::Connect {
                protocol: ProtocolVersion::V311,
                client_id: "bench".into(),
                clean_start: true,
                keep_alive: 60,
                username: None,
                password: None,
                will: None,
                properties: Default::default(),
            }),
            &mut connect,
        );
        let mut codec = Codec::new(1 << 20);
        let _ = codec.decode(&mut connect);
        b.iter(|| {
            let mut buf = wire.clone();
            black_box(codec.decode(&mut buf).ok().flatten());
        })
    });
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode PUBLISH QoS 1 (64 B)", |b| {
        b.iter(|| {
            out.clear();
            let _ = Codec::encode_with(ProtocolVersion::V311, &publish, &mut out);
            black_box(&out);
        })
    });
    group.finish();
}

fn topic_routing(c: &mut Criterion) {
    let mut trie = TopicTrie::default();
    for i in 0..10_000u32 {
        let pattern = match i % 4 {
            0 => format!("sensors.room{i}.temp"),
            1 => format!("sensors.*.humidity{i}"),
            2 => format!("devices.{i}.#"),
            _ => format!("#.alarm{i}"),
        };
        trie.insert(&pattern, i);
    }
    let mut group = c.benchmark_group("topic");
    group.throughput(Throughput::Elements(1));
    group.bench_function("route among 10,000 bindings", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            trie.for_each_match(black_box("sensors.room4.temp"), &mut |_| hits += 1);
            trie.for_each_match(black_box("devices.42.status.battery"), &mut |_| hits += 1);
            black_box(hits)
        })
    });
    group.finish();
}

criterion_group!(benches, amqp, mqtt, topic_routing);
criterion_main!(benches);
