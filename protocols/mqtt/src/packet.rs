//! The packet model: one set of structs for MQTT 3.1.1 and 5.0.
//!
//! Fields that exist only in v5 (properties, reason codes on acks, subscription options other
//! than QoS) are plain data here; the decoder leaves them at their defaults for a 3.1.1
//! connection and the encoder drops them. Reason codes are always the v5 values
//! ([`crate::reason`]); the encoder maps them for 3.1.1 where 3.1.1 has codes at all.

use bytes::Bytes;

/// The protocol version a connection announced in its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    #[default]
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of the CONNECT (4 or 5).
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// Quality of service of a publish or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// QoS 0.
    #[default]
    AtMostOnce = 0,
    /// QoS 1.
    AtLeastOnce = 1,
    /// QoS 2.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value; `None` for 3 and above.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The wire value (0, 1 or 2).
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// CONNECT (client → server).
    Connect(Connect),
    /// CONNACK (server → client).
    ConnAck(ConnAck),
    /// PUBLISH (both directions).
    Publish(Publish),
    /// PUBACK (both directions).
    PubAck(PubAck),
    /// PUBREC (both directions).
    PubRec(PubRec),
    /// PUBREL (both directions).
    PubRel(PubRel),
    /// PUBCOMP (both directions).
    PubComp(PubComp),
    /// SUBSCRIBE (client → server).
    Subscribe(Subscribe),
    /// SUBACK (server → client).
    SubAck(SubAck),
    /// UNSUBSCRIBE (client → server).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (server → client).
    UnsubAck(UnsubAck),
    /// PINGREQ (client → server).
    PingReq,
    /// PINGRESP (server → client).
    PingResp,
    /// DISCONNECT (client → server; also server → client in v5).
    Disconnect(Disconnect),
    /// AUTH (v5 only, both directions).
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the spec spells it ("PUBLISH", "SUBACK" …), for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connect {
    /// The announced protocol version.
    pub protocol: ProtocolVersion,
    /// Client identifier; may be empty (the broker then assigns one or refuses).
    pub client_id: String,
    /// Clean Start (v5) / Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// User name, when the user name flag is set (may be `Some("")`).
    pub username: Option<String>,
    /// Password (binary data), when the password flag is set.
    pub password: Option<Bytes>,
    /// The will message, when the will flag is set.
    pub will: Option<Will>,
    /// CONNECT properties (v5; default for 3.1.1).
    pub properties: ConnectProperties,
}

/// CONNECT properties (MQTT 5.0 §3.1.2.11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectProperties {
    /// Session Expiry Interval (s); absent = 0.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum; never 0 after decode.
    pub receive_maximum: Option<u16>,
    /// Maximum Packet Size the client accepts; never 0 after decode.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum the client accepts.
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information (0 or 1).
    pub request_response_information: Option<u8>,
    /// Request Problem Information (0 or 1).
    pub request_problem_information: Option<u8>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Authentication Method (enhanced authentication).
    pub authentication_method: Option<String>,
    /// Authentication Data; only present with a method.
    pub authentication_data: Option<Bytes>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Will {
    /// Will topic (a valid topic name).
    pub topic: String,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain.
    pub retain: bool,
    /// Will properties that a PUBLISH also has (payload format, expiry, content type,
    /// response topic, correlation data, user properties); topic alias and subscription
    /// identifiers are never set.
    pub properties: PublishProperties,
    /// Will Delay Interval (s), v5.
    pub delay_interval: Option<u32>,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publish {
    /// DUP flag; always false for QoS 0.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; may be "" in v5 when a topic alias is set.
    pub topic: String,
    /// Packet identifier; 0 for QoS 0, never 0 otherwise.
    pub packet_id: u16,
    /// Payload, a zero-copy slice of the input on decode.
    pub payload: Bytes,
    /// PUBLISH properties (v5).
    pub properties: PublishProperties,
}

/// PUBLISH properties (MQTT 5.0 §3.3.2.3); also the will properties.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishProperties {
    /// Payload Format Indicator (0 bytes, 1 UTF-8).
    pub payload_format_indicator: Option<u8>,
    /// Message Expiry Interval (s).
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias; never 0 after decode.
    pub topic_alias: Option<u16>,
    /// Response Topic (a topic name).
    pub response_topic: Option<String>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Subscription Identifiers (server → client only; a client PUBLISH with one is a
    /// protocol error [MQTT-3.3.4-6]).
    pub subscription_identifiers: Vec<u32>,
    /// Content Type.
    pub content_type: Option<String>,
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AckProperties {
    /// Reason String.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

/// PUBACK (QoS 1 acknowledgement).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubAck {
    /// Packet identifier of the PUBLISH.
    pub packet_id: u16,
    /// v5 reason code (0 for 3.1.1).
    pub reason: u8,
    /// v5 properties.
    pub properties: AckProperties,
}

/// PUBREC (QoS 2, step 1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubRec {
    /// Packet identifier of the PUBLISH.
    pub packet_id: u16,
    /// v5 reason code (0 for 3.1.1).
    pub reason: u8,
    /// v5 properties.
    pub properties: AckProperties,
}

/// PUBREL (QoS 2, step 2).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubRel {
    /// Packet identifier of the PUBLISH.
    pub packet_id: u16,
    /// v5 reason code (0 for 3.1.1).
    pub reason: u8,
    /// v5 properties.
    pub properties: AckProperties,
}

/// PUBCOMP (QoS 2, step 3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubComp {
    /// Packet identifier of the PUBLISH.
    pub packet_id: u16,
    /// v5 reason code (0 for 3.1.1).
    pub reason: u8,
    /// v5 properties.
    pub properties: AckProperties,
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscribeFilter {
    /// The topic filter, UTF-8 checked but not validated: the broker checks it with
    /// [`crate::topic::valid_topic_filter`] and answers 0x8F per filter.
    pub filter: String,
    /// Maximum QoS requested.
    pub qos: QoS,
    /// v5 No Local.
    pub no_local: bool,
    /// v5 Retain As Published.
    pub retain_as_published: bool,
    /// v5 Retain Handling (0 send retained, 1 only for a new subscription, 2 never).
    pub retain_handling: u8,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// At least one filter.
    pub filters: Vec<SubscribeFilter>,
    /// v5 Subscription Identifier (1..=268,435,455).
    pub subscription_identifier: Option<u32>,
    /// v5 user properties.
    pub user_properties: Vec<(String, String)>,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// One v5 reason code per filter (3.1.1: 0, 1, 2 or 0x80; the encoder maps every v5
    /// failure code to 0x80).
    pub reasons: Vec<u8>,
    /// v5 properties.
    pub properties: AckProperties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// At least one filter (UTF-8 checked only).
    pub filters: Vec<String>,
    /// v5 user properties.
    pub user_properties: Vec<(String, String)>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// One v5 reason code per filter; not on the wire for 3.1.1 (decoded as empty).
    pub reasons: Vec<u8>,
    /// v5 properties.
    pub properties: AckProperties,
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAck {
    /// Session Present flag.
    pub session_present: bool,
    /// v5 reason code; the encoder maps it with [`crate::reason::connack_v4_from_v5`] for
    /// 3.1.1, and decoding a 3.1.1 CONNACK maps back with
    /// [`crate::reason::connack_v5_from_v4`].
    pub reason: u8,
    /// v5 properties.
    pub properties: ConnAckProperties,
}

/// CONNACK properties (MQTT 5.0 §3.2.2.3).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAckProperties {
    /// Session Expiry Interval (s) the server uses.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum of the server (non-zero).
    pub receive_maximum: Option<u16>,
    /// Maximum QoS (0 or 1; absent = 2).
    pub maximum_qos: Option<u8>,
    /// Retain Available.
    pub retain_available: Option<bool>,
    /// Maximum Packet Size the server accepts (non-zero).
    pub maximum_packet_size: Option<u32>,
    /// Assigned Client Identifier (for an empty client id).
    pub assigned_client_identifier: Option<String>,
    /// Topic Alias Maximum the server accepts.
    pub topic_alias_maximum: Option<u16>,
    /// Reason String.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<bool>,
    /// Subscription Identifiers Available.
    pub subscription_identifiers_available: Option<bool>,
    /// Shared Subscription Available.
    pub shared_subscription_available: Option<bool>,
    /// Server Keep Alive (s), overriding the client's.
    pub server_keep_alive: Option<u16>,
    /// Response Information.
    pub response_information: Option<String>,
    /// Server Reference.
    pub server_reference: Option<String>,
    /// Authentication Method.
    pub authentication_method: Option<String>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
}

/// DISCONNECT. For 3.1.1 only the default (reason 0, no properties) exists on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    /// v5 reason code (0 = normal disconnection).
    pub reason: u8,
    /// Session Expiry Interval (s), client → server only.
    pub session_expiry_interval: Option<u32>,
    /// Reason String.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Server Reference, server → client only.
    pub server_reference: Option<String>,
}

/// AUTH (v5 enhanced authentication).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// Reason code: 0x00 success, 0x18 continue, 0x19 re-authenticate.
    pub reason: u8,
    /// Authentication Method.
    pub authentication_method: Option<String>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// Reason String.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}
