#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Unit and property tests: golden bytes (captured from paho-mqtt 2.2.0), every mqttbytes
//! deviation, limits and streaming, topic matching, round trips.

mod deviations;
mod golden;
mod limits;
mod perf;
mod roundtrip;
mod topics;

use bytes::BytesMut;

use crate::{Codec, DecodeError, Packet, ProtocolVersion};

/// Large enough for every test packet.
pub(super) const MAX: usize = 1 << 20;

/// Hex to bytes (whitespace ignored).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// paho-mqtt 2.2.0, MQTT 3.1.1: client id "paho-golden", keep alive 60, clean session,
/// user/password guest/guest, will "clients/paho-golden/status" = "offline" QoS 1 retained.
pub(super) const PAHO_CONNECT_V311: &str = "104a00044d51545404ee003c000b7061686f2d676f6c64656e001a636c69656e74732f7061686f2d676f6c64656e2f73746174757300076f66666c696e650005677565737400056775657374";
/// paho-mqtt 2.2.0, MQTT 5.0: the same, plus Session Expiry 3600, Receive Maximum 20 and
/// Will Delay 10.
pub(super) const PAHO_CONNECT_V5: &str = "105900044d51545405ee003c081100000e10210014000b7061686f2d676f6c64656e05180000000a001a636c69656e74732f7061686f2d676f6c64656e2f73746174757300076f66666c696e650005677565737400056775657374";

/// A minimal CONNECT (client id "c") in `version`.
pub(super) fn connect_bytes(version: ProtocolVersion) -> Vec<u8> {
    match version {
        ProtocolVersion::V311 => hex("100d00044d5154540402003c000163"),
        ProtocolVersion::V5 => hex("100e00044d5154540502003c00000163"),
    }
}

/// A server codec that has decoded a minimal CONNECT in `version`.
pub(super) fn connected(version: ProtocolVersion) -> Codec {
    let mut codec = Codec::new(MAX);
    let mut buf = BytesMut::from(&connect_bytes(version)[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    codec
}

/// Decodes exactly one packet from `bytes` with `codec`, failing on leftovers.
pub(super) fn decode_one(codec: &mut Codec, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = codec.decode(&mut buf)?.expect("a whole packet");
    assert!(buf.is_empty(), "leftover bytes: {buf:?}");
    Ok(packet)
}

/// Decodes one packet sent by a client after a minimal CONNECT.
pub(super) fn decode_after_connect(
    version: ProtocolVersion,
    bytes: &[u8],
) -> Result<Packet, DecodeError> {
    decode_one(&mut connected(version), bytes)
}

/// Encodes with `encode_with`.
pub(super) fn encode(version: ProtocolVersion, packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    Codec::encode_with(version, packet, &mut out).expect("encodes");
    out.to_vec()
}
