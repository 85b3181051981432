//! [`Codec`]: streaming decode with size limits and the version switch, and encode.
//!
//! Call order for a server connection: [`Codec::new`] with the broker's limit, then
//! [`Codec::decode`] after every read until it returns `Ok(None)`. The first packet must be
//! CONNECT; from then on [`Codec::version`] is the announced version and [`Codec::encode`]
//! writes in it. After a v5 CONNECT with a Maximum Packet Size, call
//! [`Codec::set_max_outgoing_packet_size`] so oversize packets are refused, not sent.
//!
//! Decoding reads the fixed header first: the packet type, its reserved flags
//! [MQTT-2.2.2-2], the direction (a server only accepts client packets) and the declared
//! size are all checked before a single body byte is waited for, so a peer announcing a
//! 200 MB packet is refused after at most 5 bytes.

use bytes::BytesMut;

use crate::bridge::{self, Frame};
use crate::error::{DecodeError, EncodeError};
use crate::packet::{AckProperties, Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel};
use crate::read;
use crate::reason;
use crate::write;

/// Which side of the connection this codec decodes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Decodes client → server packets; the first must be CONNECT.
    Server,
    /// Decodes server → client packets in a version fixed up front (tests, load tools).
    Client,
}

/// One connection's MQTT codec state: the version, the limits and whether CONNECT was seen.
#[derive(Debug, Clone)]
pub struct Codec {
    pub(crate) role: Role,
    pub(crate) version: Option<ProtocolVersion>,
    pub(crate) connected: bool,
    pub(crate) max_incoming: usize,
    pub(crate) max_outgoing: Option<usize>,
}

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// A parsed fixed header.
struct Header {
    byte1: u8,
    len: usize,
    remaining: usize,
}

/// Reads the fixed header from the front of `buf`: `Ok(None)` while incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(Header {
                byte1,
                len: 2 + i,
                remaining,
            }));
        }
    }
    // A fifth length byte: remaining length is at most 4 bytes [MQTT-1.5.5 / 2.2.3].
    Err(DecodeError::MalformedRemainingLength)
}

impl Codec {
    /// A server-side codec. `max_incoming_packet_size`: total packet size limit (fixed
    /// header included) for decode.
    pub fn new(max_incoming_packet_size: usize) -> Codec {
        Codec {
            role: Role::Server,
            version: None,
            connected: false,
            max_incoming: max_incoming_packet_size,
            max_outgoing: None,
        }
    }

    /// A client-side codec: decodes server → client packets (CONNACK, SUBACK, PUBLISH …) in
    /// `version`, for tests and load tools. Encoding works as for a server codec.
    pub fn new_client(version: ProtocolVersion, max_incoming_packet_size: usize) -> Codec {
        Codec {
            role: Role::Client,
            version: Some(version),
            connected: true,
            max_incoming: max_incoming_packet_size,
            max_outgoing: None,
        }
    }

    /// `None` until a CONNECT was decoded; then the version it announced. It is also set
    /// when a CONNECT announced level 4 or 5 but then failed to decode, so the listener
    /// can send its CONNACK in the client's version.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Sets the client's Maximum Packet Size (v5) so encode can refuse oversize packets.
    /// `None` (the default) means the protocol maximum.
    pub fn set_max_outgoing_packet_size(&mut self, max: Option<u32>) {
        self.max_outgoing = max.map(|m| m as usize);
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed and `buf` is untouched. The size limit is checked
    /// as soon as the fixed header is complete, so an oversize packet is refused without
    /// buffering it. The first packet must be CONNECT ([`DecodeError::FirstPacketNotConnect`]);
    /// a second CONNECT is `ProtocolError("second CONNECT")`. Only client → server packet
    /// types are accepted (a server codec); a client codec accepts server → client ones.
    /// After an error `buf` is in an unspecified state and the connection must close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        if let Some(&byte1) = buf.first() {
            // Type, flags and order are known from the first byte: refuse early.
            self.check_first_byte(byte1)?;
        }
        let Some(h) = parse_header(buf)? else {
            return Ok(None);
        };
        let size = h.len + h.remaining;
        if size > self.max_incoming {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_incoming,
            });
        }
        if buf.len() < size {
            return Ok(None);
        }
        let bytes = buf.split_to(size).freeze();
        let frame = Frame {
            byte1: h.byte1,
            header_len: h.len,
            bytes,
        };
        self.decode_frame(frame).map(Some)
    }

    /// Packet type, reserved flags [MQTT-2.2.2-2], direction and the CONNECT-first rule.
    fn check_first_byte(&self, byte1: u8) -> Result<(), DecodeError> {
        let kind = byte1 >> 4;
        let flags = byte1 & 0x0F;
        if self.role == Role::Server && !self.connected && kind != CONNECT {
            return Err(DecodeError::FirstPacketNotConnect);
        }
        let v5 = self.version == Some(ProtocolVersion::V5);
        let server = self.role == Role::Server;
        let expected_flags = match kind {
            0 => return Err(DecodeError::Malformed("reserved packet type 0")),
            CONNECT if server => 0,
            CONNACK | SUBACK | UNSUBACK | PINGRESP if !server => 0,
            CONNECT | CONNACK | SUBACK | UNSUBACK | PINGRESP => {
                return Err(DecodeError::ProtocolError(if server {
                    "server-to-client packet type from a client"
                } else {
                    "CONNECT from a server"
                }))
            }
            SUBSCRIBE | UNSUBSCRIBE | PINGREQ if !server => {
                return Err(DecodeError::ProtocolError(
                    "client-to-server packet type from a server",
                ))
            }
            DISCONNECT if !server && !v5 => {
                return Err(DecodeError::ProtocolError(
                    "DISCONNECT from a MQTT 3.1.1 server",
                ))
            }
            AUTH if !v5 => return Err(DecodeError::Malformed("reserved packet type 15")),
            PUBLISH => {
                if flags & 0x06 == 0x06 {
                    return Err(DecodeError::Malformed("QoS 3")); // [MQTT-3.3.1-4]
                }
                if flags & 0x06 == 0 && flags & 0x08 != 0 {
                    return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
                    // [MQTT-3.3.1-2]
                }
                return Ok(());
            }
            PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0x02,
            _ => 0,
        };
        if flags != expected_flags {
            return Err(DecodeError::Malformed("reserved fixed header flags"));
        }
        Ok(())
    }

    fn decode_frame(&mut self, frame: Frame) -> Result<Packet, DecodeError> {
        let kind = frame.byte1 >> 4;
        if kind == CONNECT {
            if self.connected {
                return Err(DecodeError::ProtocolError("second CONNECT"));
            }
            let body = frame.bytes.slice(frame.header_len..);
            let connect = read::connect(body, &mut self.version)?;
            self.connected = true;
            return Ok(Packet::Connect(connect));
        }
        let v5 = self.version == Some(ProtocolVersion::V5);
        let from_client = self.role == Role::Server;
        let body = frame.bytes.slice(frame.header_len..);
        Ok(match (kind, v5) {
            (PUBLISH, false) => Packet::Publish(bridge::publish_v4(frame)?),
            (PUBLISH, true) => Packet::Publish(read::publish_v5(frame.byte1, body, from_client)?),
            (PUBACK | PUBREC | PUBREL | PUBCOMP, false) => {
                ack_packet(kind, bridge::ack_v4(frame)?, 0, AckProperties::default())
            }
            (PUBACK | PUBREC, true) => {
                let (id, code, props) = read::ack_v5(body, reason::valid_puback)?;
                ack_packet(kind, id, code, props)
            }
            (PUBREL | PUBCOMP, true) => {
                let (id, code, props) = read::ack_v5(body, reason::valid_pubrel)?;
                ack_packet(kind, id, code, props)
            }
            (SUBSCRIBE, false) => Packet::Subscribe(bridge::subscribe_v4(frame)?),
            (SUBSCRIBE, true) => Packet::Subscribe(read::subscribe_v5(body)?),
            (UNSUBSCRIBE, false) => Packet::Unsubscribe(bridge::unsubscribe_v4(frame)?),
            (UNSUBSCRIBE, true) => Packet::Unsubscribe(read::unsubscribe_v5(body)?),
            (PINGREQ | PINGRESP, _) | (DISCONNECT, false) => {
                // mqttbytes accepts these with a body; the spec says remaining length 0.
                if !body.is_empty() {
                    return Err(DecodeError::Malformed(
                        "non-empty PINGREQ/PINGRESP/DISCONNECT",
                    ));
                }
                match kind {
                    PINGREQ => Packet::PingReq,
                    PINGRESP => Packet::PingResp,
                    _ => Packet::Disconnect(Default::default()),
                }
            }
            (DISCONNECT, true) => Packet::Disconnect(read::disconnect_v5(body)?),
            (AUTH, _) => Packet::Auth(read::auth(body)?),
            (CONNACK, false) => Packet::ConnAck(bridge::connack_v4(frame)?),
            (CONNACK, true) => Packet::ConnAck(read::connack_v5(body)?),
            (SUBACK, false) => Packet::SubAck(bridge::suback_v4(frame)?),
            (SUBACK, true) => Packet::SubAck(read::suback_v5(body)?),
            (UNSUBACK, false) => Packet::UnsubAck(bridge::unsuback_v4(frame)?),
            (UNSUBACK, true) => Packet::UnsubAck(read::unsuback_v5(body)?),
            _ => return Err(DecodeError::Malformed("reserved packet type")),
        })
    }

    /// Encodes a packet in the connection's version (3.1.1 before a CONNECT was decoded);
    /// v5-only fields are dropped for 3.1.1. Fails with [`EncodeError::PacketTooLarge`]
    /// when the packet exceeds the client's Maximum Packet Size: for a PUBLISH the broker
    /// then drops the message [MQTT-3.1.2-25]; for other v5 packets the Reason String and
    /// User Properties are left out first, as the spec allows, and only if that is still too
    /// large is the error returned.
    pub fn encode(&self, packet: &Packet, out: &mut BytesMut) -> Result<(), EncodeError> {
        let version = self.version.unwrap_or(ProtocolVersion::V311);
        match encode_checked(version, packet, self.max_outgoing, out) {
            Err(e @ EncodeError::PacketTooLarge { .. }) if version == ProtocolVersion::V5 => {
                match strip_optional(packet) {
                    Some(smaller) => encode_checked(version, &smaller, self.max_outgoing, out),
                    None => Err(e),
                }
            }
            r => r,
        }
    }

    /// Same as [`Codec::encode`], with an explicit version and no size limit (for clients,
    /// tests and before CONNECT).
    pub fn encode_with(
        version: ProtocolVersion,
        packet: &Packet,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        encode_checked(version, packet, None, out)
    }
}

fn ack_packet(kind: u8, packet_id: u16, reason: u8, properties: AckProperties) -> Packet {
    match kind {
        PUBACK => Packet::PubAck(PubAck {
            packet_id,
            reason,
            properties,
        }),
        PUBREC => Packet::PubRec(PubRec {
            packet_id,
            reason,
            properties,
        }),
        PUBREL => Packet::PubRel(PubRel {
            packet_id,
            reason,
            properties,
        }),
        _ => Packet::PubComp(PubComp {
            packet_id,
            reason,
            properties,
        }),
    }
}

/// The packet without its Reason String and User Properties, when it has any to drop
/// (MQTT 5.0 §3.1.2.11.4: the server MUST NOT send them if that exceeds the maximum).
fn strip_optional(packet: &Packet) -> Option<Packet> {
    fn strip(p: &AckProperties) -> Option<AckProperties> {
        (p.reason_string.is_some() || !p.user_properties.is_empty()).then(AckProperties::default)
    }
    Some(match packet {
        Packet::PubAck(a) => Packet::PubAck(PubAck {
            properties: strip(&a.properties)?,
            ..a.clone()
        }),
        Packet::PubRec(a) => Packet::PubRec(PubRec {
            properties: strip(&a.properties)?,
            ..a.clone()
        }),
        Packet::PubRel(a) => Packet::PubRel(PubRel {
            properties: strip(&a.properties)?,
            ..a.clone()
        }),
        Packet::PubComp(a) => Packet::PubComp(PubComp {
            properties: strip(&a.properties)?,
            ..a.clone()
        }),
        Packet::SubAck(a) => Packet::SubAck(crate::SubAck {
            properties: strip(&a.properties)?,
            ..a.clone()
        }),
        Packet::UnsubAck(a) => Packet::UnsubAck(crate::UnsubAck {
            properties: strip(&a.properties)?,
            ..a.clone()
        }),
        Packet::ConnAck(c)
            if c.properties.reason_string.is_some() || !c.properties.user_properties.is_empty() =>
        {
            let mut c = c.clone();
            c.properties.reason_string = None;
            c.properties.user_properties.clear();
            Packet::ConnAck(c)
        }
        Packet::Disconnect(d) if d.reason_string.is_some() || !d.user_properties.is_empty() => {
            Packet::Disconnect(crate::Disconnect {
                reason_string: None,
                user_properties: Vec::new(),
                ..d.clone()
            })
        }
        Packet::Auth(a) if a.reason_string.is_some() || !a.user_properties.is_empty() => {
            Packet::Auth(crate::Auth {
                reason_string: None,
                user_properties: Vec::new(),
                ..a.clone()
            })
        }
        _ => return None,
    })
}

/// Encodes, then enforces `max`; on any error `out` is restored to its previous length.
fn encode_checked(
    version: ProtocolVersion,
    packet: &Packet,
    max: Option<usize>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_packet(version, packet, max, out).and_then(|()| {
        let size = out.len() - start;
        match max {
            Some(max) if size > max => Err(EncodeError::PacketTooLarge { size, max }),
            _ => Ok(()),
        }
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_packet(
    version: ProtocolVersion,
    packet: &Packet,
    max: Option<usize>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Publish(p) => write::publish(version, p, max, out),
        Packet::Connect(c) => {
            // The encoding version wins over `c.protocol`, so a `Connect { ..Default }`
            // encoded with V5 is a v5 CONNECT.
            if c.protocol != version {
                let mut c = c.clone();
                c.protocol = version;
                write::connect(&c, out)
            } else {
                write::connect(c, out)
            }
        }
        Packet::ConnAck(c) if v5 => bridge::connack_v5_write(c, out),
        Packet::ConnAck(c) => bridge::connack_v4_write(c, out),
        Packet::PubAck(a) if v5 => write::ack_v5(
            0x40,
            "PUBACK",
            reason::valid_puback,
            a.packet_id,
            a.reason,
            &a.properties,
            out,
        ),
        Packet::PubRec(a) if v5 => write::ack_v5(
            0x50,
            "PUBREC",
            reason::valid_puback,
            a.packet_id,
            a.reason,
            &a.properties,
            out,
        ),
        Packet::PubRel(a) if v5 => write::ack_v5(
            0x62,
            "PUBREL",
            reason::valid_pubrel,
            a.packet_id,
            a.reason,
            &a.properties,
            out,
        ),
        Packet::PubComp(a) if v5 => write::ack_v5(
            0x70,
            "PUBCOMP",
            reason::valid_pubrel,
            a.packet_id,
            a.reason,
            &a.properties,
            out,
        ),
        Packet::PubAck(a) => bridge::ack_v4_write(PUBACK, a.packet_id, out),
        Packet::PubRec(a) => bridge::ack_v4_write(PUBREC, a.packet_id, out),
        Packet::PubRel(a) => bridge::ack_v4_write(PUBREL, a.packet_id, out),
        Packet::PubComp(a) => bridge::ack_v4_write(PUBCOMP, a.packet_id, out),
        Packet::Subscribe(s) if v5 => bridge::subscribe_v5_write(s, out),
        Packet::Subscribe(s) => bridge::subscribe_v4_write(s, out),
        Packet::SubAck(s) if v5 => bridge::suback_v5_write(s, out),
        Packet::SubAck(s) => bridge::suback_v4_write(s, out),
        Packet::Unsubscribe(u) if v5 => bridge::unsubscribe_v5_write(u, out),
        Packet::Unsubscribe(u) => bridge::unsubscribe_v4_write(u, out),
        Packet::UnsubAck(u) if v5 => write::unsuback_v5(u, out),
        Packet::UnsubAck(u) => bridge::unsuback_v4_write(u, out),
        Packet::PingReq => bridge::pingreq_write(out),
        Packet::PingResp => bridge::pingresp_write(out),
        Packet::Disconnect(d) if v5 => bridge::disconnect_v5_write(d, out),
        Packet::Disconnect(_) => bridge::disconnect_v4_write(out),
        Packet::Auth(a) if v5 => write::auth(a, out),
        Packet::Auth(_) => Err(EncodeError::NotInVersion("AUTH")),
    }
}
