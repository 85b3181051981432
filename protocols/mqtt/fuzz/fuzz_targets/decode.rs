//! Feeds arbitrary bytes through `Codec::decode` in a loop, three ways: a fresh server codec
//! (the input must start with a CONNECT), a server codec primed with a v5 CONNECT, and a
//! client codec (server → client packets). Every decoded packet (other than the CONNECT)
//! must re-encode, decode to the same packet and re-encode to the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_mqtt::{Codec, Packet, ProtocolVersion};

const MAX: usize = 64 * 1024;

/// A v5 CONNECT, client id "c", keep alive 60, no properties.
const CONNECT_V5: &[u8] = &[
    0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x01, b'c',
];

/// The same in MQTT 3.1.1.
const CONNECT_V311: &[u8] = &[
    0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, b'c',
];

fn run(mut codec: Codec, data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = codec.decode(&mut buf) {
        if matches!(packet, Packet::Connect(_)) {
            continue;
        }
        let version = codec.version().unwrap_or(ProtocolVersion::V311);
        let mut first = BytesMut::new();
        if Codec::encode_with(version, &packet, &mut first).is_err() {
            continue;
        }
        let mut again = first.clone();
        // Decode the re-encoding with a codec of the same kind and version.
        let mut checker = match &packet {
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Codec::new_client(version, usize::MAX)
            }
            _ => {
                let mut server = Codec::new(usize::MAX);
                let mut connect = BytesMut::from(match version {
                    ProtocolVersion::V5 => CONNECT_V5,
                    ProtocolVersion::V311 => CONNECT_V311,
                });
                server.decode(&mut connect).expect("CONNECT decodes");
                server
            }
        };
        let decoded = match checker.decode(&mut again) {
            Ok(Some(p)) => p,
            // A server PUBLISH with subscription identifiers is not a client packet.
            Err(_) if matches!(packet, Packet::Publish(_)) => continue,
            other => panic!("re-encoded {packet:?} did not decode: {other:?}"),
        };
        assert!(again.is_empty(), "leftover bytes after re-decoding");
        assert_eq!(decoded, packet, "decode(encode(p)) != p");
        let mut second = BytesMut::new();
        Codec::encode_with(version, &decoded, &mut second).expect("encodes again");
        assert_eq!(first, second, "encode(decode(encode(p))) differs");
    }
}

fuzz_target!(|data: &[u8]| {
    run(Codec::new(MAX), data);
    let mut primed = Codec::new(MAX);
    let mut connect = BytesMut::from(CONNECT_V5);
    primed.decode(&mut connect).expect("CONNECT decodes");
    run(primed, data);
    run(Codec::new_client(ProtocolVersion::V5, MAX), data);
    run(Codec::new_client(ProtocolVersion::V311, MAX), data);
});
