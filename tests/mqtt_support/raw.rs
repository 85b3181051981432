//! A hand-rolled MQTT client over a plain `TcpStream`, for what no client library sends:
//! malformed and out-of-order packets, keep-alive silence, receive-maximum abuse.
//!
//! It deliberately does not use the broker's codec crate (`protocols/mqtt`), so a codec bug
//! cannot hide itself. It encodes only what the tests need (MQTT 3.1.1 §2 and MQTT 5.0 §2: a
//! fixed header byte, a variable byte integer "remaining length", then the packet).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{within, within_for};

/// Packet types (high nibble of the first byte).
pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;

/// MQTT 5 property identifiers used by the tests (MQTT 5.0 §2.2.2.2).
pub(crate) const PROP_MESSAGE_EXPIRY: u8 = 0x02;
pub(crate) const PROP_SESSION_EXPIRY: u8 = 0x11;
pub(crate) const PROP_REASON_STRING: u8 = 0x1F;
pub(crate) const PROP_RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const PROP_TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const PROP_TOPIC_ALIAS: u8 = 0x23;
pub(crate) const PROP_MAXIMUM_PACKET_SIZE: u8 = 0x27;

/// MQTT 5 reason codes the tests expect (MQTT 5.0 §2.4).
pub(crate) const RC_MALFORMED_PACKET: u8 = 0x81;
pub(crate) const RC_PROTOCOL_ERROR: u8 = 0x82;
pub(crate) const RC_SERVER_SHUTTING_DOWN: u8 = 0x8B;
pub(crate) const RC_SESSION_TAKEN_OVER: u8 = 0x8E;
pub(crate) const RC_TOPIC_NAME_INVALID: u8 = 0x90;
pub(crate) const RC_RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub(crate) const RC_PACKET_TOO_LARGE: u8 = 0x95;

/// Protocol level byte in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V311,
    V5,
}

/// Appends a variable byte integer (MQTT 3.1.1 §2.2.3, MQTT 5.0 §1.5.5).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            break;
        }
    }
}

/// Appends a two-byte-length-prefixed string or binary (raw bytes, so tests can send invalid
/// UTF-8).
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).expect("fits").to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A whole packet: first byte, remaining length, body.
pub(crate) fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// MQTT 5 properties block (length prefix included) from already encoded properties.
pub(crate) fn properties(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, encoded.len());
    out.extend_from_slice(encoded);
    out
}

/// What a CONNECT carries.
#[derive(Debug, Clone)]
pub(crate) struct Connect {
    pub(crate) version: Version,
    pub(crate) client_id: String,
    pub(crate) clean: bool,
    pub(crate) keep_alive: u16,
    /// `(topic, payload, qos, retain)`.
    pub(crate) will: Option<(String, Vec<u8>, u8, bool)>,
    /// Encoded CONNECT properties (v5 only), without the length prefix.
    pub(crate) properties: Vec<u8>,
}

impl Connect {
    pub(crate) fn new(version: Version, client_id: &str) -> Connect {
        Connect {
            version,
            client_id: client_id.to_string(),
            clean: true,
            keep_alive: 30,
            will: None,
            properties: Vec::new(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_bytes(&mut body, b"MQTT");
        body.push(match self.version {
            Version::V311 => 4,
            Version::V5 => 5,
        });
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some((_, _, qos, retain)) = &self.will {
            flags |= 0x04 | (qos << 3);
            if *retain {
                flags |= 0x20;
            }
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if self.version == Version::V5 {
            body.extend_from_slice(&properties(&self.properties));
        }
        put_bytes(&mut body, self.client_id.as_bytes());
        if let Some((topic, payload, _, _)) = &self.will {
            if self.version == Version::V5 {
                body.push(0); // no will properties
            }
            put_bytes(&mut body, topic.as_bytes());
            put_bytes(&mut body, payload);
        }
        packet(CONNECT << 4, &body)
    }
}

/// A PUBLISH with raw topic bytes (no properties for v5).
pub(crate) fn publish(
    version: Version,
    topic: &[u8],
    qos: u8,
    packet_id: u16,
    payload: &[u8],
) -> Vec<u8> {
    publish_with_properties(version, topic, qos, packet_id, &[], payload)
}

/// A PUBLISH with raw topic bytes and encoded v5 properties (ignored for 3.1.1).
pub(crate) fn publish_with_properties(
    version: Version,
    topic: &[u8],
    qos: u8,
    packet_id: u16,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if version == Version::V5 {
        body.extend_from_slice(&properties(props));
    }
    body.extend_from_slice(payload);
    packet((PUBLISH << 4) | (qos << 1), &body)
}

/// A SUBSCRIBE for one filter.
pub(crate) fn subscribe(version: Version, packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0);
    }
    put_bytes(&mut body, filter.as_bytes());
    body.push(qos);
    packet((SUBSCRIBE << 4) | 0x02, &body)
}

/// A PINGREQ.
pub(crate) fn pingreq() -> Vec<u8> {
    vec![PINGREQ << 4, 0]
}

/// A DISCONNECT (normal disconnection).
pub(crate) fn disconnect() -> Vec<u8> {
    vec![DISCONNECT << 4, 0]
}

/// One packet as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packet {
    pub(crate) first_byte: u8,
    pub(crate) body: Vec<u8>,
}

impl Packet {
    pub(crate) fn kind(&self) -> u8 {
        self.first_byte >> 4
    }

    /// The reason code of a v5 DISCONNECT (0x00 when the body is empty, MQTT 5.0 §3.14.2.1).
    pub(crate) fn disconnect_reason(&self) -> Option<u8> {
        (self.kind() == DISCONNECT).then(|| self.body.first().copied().unwrap_or(0))
    }

    /// `(session_present, return/reason code, properties)` of a CONNACK.
    pub(crate) fn connack(&self, version: Version) -> Option<(bool, u8, Properties)> {
        if self.kind() != CONNACK || self.body.len() < 2 {
            return None;
        }
        let props = match version {
            Version::V311 => Properties::default(),
            Version::V5 => parse_properties(&self.body[2..]).0,
        };
        Some((self.body[0] & 1 == 1, self.body[1], props))
    }

    /// `(topic, packet id, properties, payload)` of a PUBLISH.
    pub(crate) fn publish(&self, version: Version) -> Option<(Vec<u8>, u16, Properties, Vec<u8>)> {
        if self.kind() != PUBLISH || self.body.len() < 2 {
            return None;
        }
        let qos = (self.first_byte >> 1) & 3;
        let len = usize::from(u16::from_be_bytes([self.body[0], self.body[1]]));
        let topic = self.body.get(2..2 + len)?.to_vec();
        let mut at = 2 + len;
        let mut packet_id = 0;
        if qos > 0 {
            packet_id = u16::from_be_bytes([*self.body.get(at)?, *self.body.get(at + 1)?]);
            at += 2;
        }
        let mut props = Properties::default();
        if version == Version::V5 {
            let (parsed, used) = parse_properties(self.body.get(at..)?);
            props = parsed;
            at += used;
        }
        Some((topic, packet_id, props, self.body.get(at..)?.to_vec()))
    }
}

/// Decoded MQTT 5 properties: numeric ones by id (u8/u16/u32/varint widened), strings by id;
/// binary data and user properties are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Properties {
    pub(crate) numbers: HashMap<u8, u32>,
    pub(crate) strings: HashMap<u8, String>,
}

/// Parses a properties block (starting at its length); returns it and the bytes used.
/// Unknown property ids stop parsing (the tests only read well-known ones).
pub(crate) fn parse_properties(bytes: &[u8]) -> (Properties, usize) {
    let mut props = Properties::default();
    let Some((len, len_size)) = read_varint(bytes) else {
        return (props, bytes.len());
    };
    let end = (len_size + len).min(bytes.len());
    let mut at = len_size;
    while at < end {
        let id = bytes[at];
        at += 1;
        let u16_at = |at: usize| {
            bytes
                .get(at..at + 2)
                .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
        };
        match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                if let Some(b) = bytes.get(at) {
                    props.numbers.insert(id, u32::from(*b));
                }
                at += 1;
            }
            0x13 | 0x21 | 0x22 | 0x23 => {
                if let Some(v) = u16_at(at) {
                    props.numbers.insert(id, v);
                }
                at += 2;
            }
            0x02 | 0x11 | 0x18 | 0x27 => {
                if let Some(b) = bytes.get(at..at + 4) {
                    props
                        .numbers
                        .insert(id, u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
                at += 4;
            }
            0x0B => match read_varint(&bytes[at..]) {
                Some((v, used)) => {
                    props
                        .numbers
                        .insert(id, u32::try_from(v).unwrap_or(u32::MAX));
                    at += used;
                }
                None => break,
            },
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F | 0x09 | 0x16 => {
                let Some(n) = u16_at(at) else { break };
                let n = n as usize;
                if let Some(s) = bytes.get(at + 2..at + 2 + n) {
                    if !matches!(id, 0x09 | 0x16) {
                        props
                            .strings
                            .insert(id, String::from_utf8_lossy(s).into_owned());
                    }
                }
                at += 2 + n;
            }
            0x26 => {
                let Some(k) = u16_at(at) else { break };
                at += 2 + k as usize;
                let Some(v) = u16_at(at) else { break };
                at += 2 + v as usize;
            }
            _ => break,
        }
    }
    (props, end)
}

/// Reads a variable byte integer; `(value, bytes used)`.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A raw client connection.
pub(crate) struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    pub(crate) async fn connect(addr: SocketAddr) -> RawClient {
        let stream = within("TCP connect", TcpStream::connect(addr))
            .await
            .expect("TCP connect to the MQTT listener");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        RawClient {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Connects and completes a CONNECT / CONNACK handshake; panics unless the broker accepts
    /// (return code 0). Returns the CONNACK's properties (empty for 3.1.1).
    pub(crate) async fn handshake(addr: SocketAddr, connect: &Connect) -> (RawClient, Properties) {
        let mut client = RawClient::connect(addr).await;
        client.send(&connect.encode()).await;
        let connack = client
            .read_packet()
            .await
            .expect("the broker answers CONNECT");
        let (_, code, props) = connack
            .connack(connect.version)
            .unwrap_or_else(|| panic!("expected CONNACK, got {connack:?}"));
        assert_eq!(code, 0, "CONNACK code for {:?}", connect.client_id);
        (client, props)
    }

    /// Writes bytes. A write error (the broker already closed) is ignored: the tests look at
    /// what the broker sent and whether it closed.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        let _ = within("socket write", self.stream.write_all(bytes)).await;
    }

    /// The next packet, or `None` when the broker closed the connection (EOF or reset).
    pub(crate) async fn read_packet(&mut self) -> Option<Packet> {
        self.read_packet_within(super::STEP).await
    }

    /// [`RawClient::read_packet`] with an explicit limit.
    pub(crate) async fn read_packet_within(&mut self, limit: Duration) -> Option<Packet> {
        within_for(limit, "a packet or close from the broker", async {
            loop {
                if let Some(packet) = self.take_buffered() {
                    return Some(packet);
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
    }

    fn take_buffered(&mut self) -> Option<Packet> {
        if self.buffer.len() < 2 {
            return None;
        }
        let (len, used) = read_varint(&self.buffer[1..])?;
        let total = 1 + used + len;
        if self.buffer.len() < total {
            return None;
        }
        let packet = Packet {
            first_byte: self.buffer[0],
            body: self.buffer[1 + used..total].to_vec(),
        };
        self.buffer.drain(..total);
        Some(packet)
    }

    /// Reads until the broker closes the connection and returns every packet it sent first.
    /// Panics if the connection is still open after `limit`.
    pub(crate) async fn until_closed_within(&mut self, limit: Duration) -> Vec<Packet> {
        within_for(limit, "the broker to close the connection", async {
            let mut packets = Vec::new();
            while let Some(packet) = self.read_packet_within(limit).await {
                packets.push(packet);
            }
            packets
        })
        .await
    }

    /// Reads until the broker closes the connection: `Ok(packets)` if it did within `limit`,
    /// `Err(packets so far)` if the connection is still open then.
    pub(crate) async fn try_until_closed(
        &mut self,
        limit: Duration,
    ) -> Result<Vec<Packet>, Vec<Packet>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut packets = Vec::new();
        loop {
            if let Some(packet) = self.take_buffered() {
                packets.push(packet);
                continue;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(packets),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(packets),
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// [`RawClient::until_closed_within`] with the default step limit.
    pub(crate) async fn until_closed(&mut self) -> Vec<Packet> {
        self.until_closed_within(super::STEP).await
    }
}
