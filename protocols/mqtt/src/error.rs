//! Decode and encode errors, and the MQTT 5 reason code a server answers each decode error with.
//!
//! Every [`DecodeError`] is fatal for the connection: the listener sends a DISCONNECT (v5, or
//! a CONNACK while the CONNECT is being processed) with [`DecodeError::reason_code`], logs the
//! error and closes the socket; a 3.1.1 connection is simply closed (3.1.1 §4.8: "close the
//! Network Connection"). After an error the input buffer is in an unspecified state (part of
//! the bad packet may have been consumed), so the connection must not keep decoding.

use crate::reason;

/// Why some input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The fixed header declared a packet (fixed header included) larger than the limit.
    /// Raised as soon as the fixed header is read, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// Declared total packet size, fixed header included.
        size: usize,
        /// The limit ([`crate::Codec::new`]'s `max_incoming_packet_size`).
        max: usize,
    },
    /// A remaining length (or other Variable Byte Integer) longer than 4 bytes
    /// [MQTT-1.5.5 / 3.1.1 §2.2.3].
    #[error("malformed variable byte integer (more than 4 bytes)")]
    MalformedRemainingLength,
    /// The first packet on a connection was not CONNECT [MQTT-3.1.0-1].
    #[error("first packet is not CONNECT")]
    FirstPacketNotConnect,
    /// CONNECT with a protocol level this crate does not speak (3 = MQTT 3.1 "MQIsdp").
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),
    /// CONNECT with a protocol name other than "MQTT" (or "MQIsdp" with level 3).
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// The bytes do not form a valid packet (MQTT 5 "Malformed Packet").
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet is well formed but breaks a protocol rule (MQTT 5 "Protocol Error").
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// A UTF-8 string field is not well-formed UTF-8 or contains U+0000 [MQTT-1.5.3-1, -2].
    #[error("string is not valid MQTT UTF-8")]
    InvalidUtf8,
    /// A v5 property identifier that does not exist.
    #[error("unknown property identifier 0x{0:02x}")]
    UnknownProperty(u8),
    /// A v5 property that exists but is not allowed in this packet.
    #[error("property 0x{property:02x} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property identifier.
        property: u8,
        /// The packet (or will) it appeared in.
        packet: &'static str,
    },
    /// A v5 property other than User Property / Subscription Identifier given twice.
    #[error("property 0x{0:02x} included more than once")]
    DuplicateProperty(u8),
    /// A PUBLISH (or will) topic name with wildcards, U+0000, or empty without a topic alias
    /// [MQTT-3.3.2-1, -2].
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// A v5 PUBLISH with Topic Alias 0 [MQTT-3.3.2-8].
    #[error("topic alias 0 is invalid")]
    TopicAliasInvalid,
}

impl DecodeError {
    /// The v5 reason code for the DISCONNECT (or CONNACK, while connecting) a server sends.
    ///
    /// - 0x95 Packet too large; 0x84 Unsupported protocol version (also for a bad protocol
    ///   name, as MQTT 5.0 §3.1.2.1 suggests); 0x90 Topic name invalid; 0x94 Topic alias
    ///   invalid.
    /// - 0x81 Malformed packet for every parse error: bad remaining length, truncated or
    ///   trailing bytes, bad flags, bad UTF-8, unknown or disallowed properties.
    /// - 0x82 Protocol error for rule violations: first packet not CONNECT, second CONNECT,
    ///   duplicate properties, zero packet ids, Receive Maximum 0 ….
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => {
                reason::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::MalformedRemainingLength
            | DecodeError::Malformed(_)
            | DecodeError::InvalidUtf8
            | DecodeError::UnknownProperty(_)
            | DecodeError::PropertyNotAllowed { .. } => reason::MALFORMED_PACKET,
            DecodeError::FirstPacketNotConnect
            | DecodeError::ProtocolError(_)
            | DecodeError::DuplicateProperty(_) => reason::PROTOCOL_ERROR,
            DecodeError::TopicNameInvalid => reason::TOPIC_NAME_INVALID,
            DecodeError::TopicAliasInvalid => reason::TOPIC_ALIAS_INVALID,
        }
    }
}

/// Why a packet could not be encoded. Nothing is appended to the output on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded packet would exceed the peer's Maximum Packet Size (v5); the broker drops
    /// the message, as MQTT 5.0 §3.1.2.11.4 says [MQTT-3.1.2-25].
    #[error("packet of {size} bytes exceeds the peer's maximum packet size {max}")]
    PacketTooLarge {
        /// Total encoded size, fixed header included.
        size: usize,
        /// The limit set with [`crate::Codec::set_max_outgoing_packet_size`].
        max: usize,
    },
    /// The remaining length exceeds 268,435,455, the largest a fixed header can carry.
    #[error("remaining length {0} exceeds the MQTT maximum of 268435455")]
    RemainingLengthTooLarge(usize),
    /// A string or binary field is longer than 65,535 bytes.
    #[error("string or binary field of {0} bytes exceeds 65535")]
    StringTooLong(usize),
    /// A PUBLISH with QoS > 0, SUBSCRIBE, UNSUBSCRIBE or ack with packet id 0 [MQTT-2.2.1-3].
    #[error("packet identifier 0")]
    PacketIdZero,
    /// A reason code that this packet type cannot carry.
    #[error("reason code 0x{code:02x} is not valid in {packet}")]
    InvalidReasonCode {
        /// The reason code.
        code: u8,
        /// The packet type.
        packet: &'static str,
    },
    /// A field value the protocol cannot express (a subscription identifier of 0 or above
    /// 268,435,455, retain handling 3, a SUBSCRIBE/UNSUBSCRIBE without filters …).
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
    /// The packet does not exist in this protocol version (AUTH in 3.1.1).
    #[error("{0} does not exist in MQTT 3.1.1")]
    NotInVersion(&'static str),
}
