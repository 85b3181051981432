//! MQTT 5 properties (MQTT 5.0 §2.2.2): a strict reader and a length-then-write writer.
//!
//! The reader enforces what mqttbytes 0.6 does not: the property block is bounded by its
//! Property Length (a property may not run past it into the payload), only the properties
//! a packet may carry are accepted, no property but User Property (and Subscription
//! Identifier in a server PUBLISH) appears twice, and values that the spec calls a
//! Protocol Error (Receive Maximum 0, Topic Alias 0, booleans other than 0/1 …) are refused.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::packet::{
    AckProperties, Auth, ConnAckProperties, ConnectProperties, Disconnect, PublishProperties,
};
use crate::wire::{field_len, put_binary, put_varint, varint_len, Reader, MAX_VARINT};

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// Which properties a packet may carry, and its name for errors.
pub(crate) struct Allowed {
    pub(crate) packet: &'static str,
    pub(crate) ids: &'static [u8],
    /// Subscription Identifier may repeat (a server → client PUBLISH).
    pub(crate) repeat_sub_id: bool,
}

pub(crate) const CONNECT: Allowed = Allowed {
    packet: "CONNECT",
    ids: &[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFORMATION,
        REQUEST_PROBLEM_INFORMATION,
        USER_PROPERTY,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ],
    repeat_sub_id: false,
};

pub(crate) const WILL: Allowed = Allowed {
    packet: "will properties",
    ids: &[
        WILL_DELAY_INTERVAL,
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
    ],
    repeat_sub_id: false,
};

pub(crate) const PUBLISH: Allowed = Allowed {
    packet: "PUBLISH",
    ids: &[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        TOPIC_ALIAS,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
        SUBSCRIPTION_IDENTIFIER,
        CONTENT_TYPE,
    ],
    repeat_sub_id: true,
};

pub(crate) const ACK: Allowed = Allowed {
    packet: "an acknowledgement",
    ids: &[REASON_STRING, USER_PROPERTY],
    repeat_sub_id: false,
};

pub(crate) const SUBSCRIBE: Allowed = Allowed {
    packet: "SUBSCRIBE",
    ids: &[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY],
    repeat_sub_id: false,
};

pub(crate) const UNSUBSCRIBE: Allowed = Allowed {
    packet: "UNSUBSCRIBE",
    ids: &[USER_PROPERTY],
    repeat_sub_id: false,
};

pub(crate) const DISCONNECT: Allowed = Allowed {
    packet: "DISCONNECT",
    ids: &[
        SESSION_EXPIRY_INTERVAL,
        REASON_STRING,
        USER_PROPERTY,
        SERVER_REFERENCE,
    ],
    repeat_sub_id: false,
};

pub(crate) const AUTH: Allowed = Allowed {
    packet: "AUTH",
    ids: &[
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REASON_STRING,
        USER_PROPERTY,
    ],
    repeat_sub_id: false,
};

pub(crate) const CONNACK: Allowed = Allowed {
    packet: "CONNACK",
    ids: &[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        MAXIMUM_PACKET_SIZE,
        ASSIGNED_CLIENT_IDENTIFIER,
        TOPIC_ALIAS_MAXIMUM,
        REASON_STRING,
        USER_PROPERTY,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
        SERVER_KEEP_ALIVE,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ],
    repeat_sub_id: false,
};

/// Every property any packet can carry; the reader fills what the packet allows.
#[derive(Debug, Default)]
pub(crate) struct Props {
    pub(crate) payload_format_indicator: Option<u8>,
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) content_type: Option<String>,
    pub(crate) response_topic: Option<String>,
    pub(crate) correlation_data: Option<Bytes>,
    pub(crate) subscription_identifiers: Vec<u32>,
    pub(crate) session_expiry_interval: Option<u32>,
    pub(crate) assigned_client_identifier: Option<String>,
    pub(crate) server_keep_alive: Option<u16>,
    pub(crate) authentication_method: Option<String>,
    pub(crate) authentication_data: Option<Bytes>,
    pub(crate) request_problem_information: Option<u8>,
    pub(crate) will_delay_interval: Option<u32>,
    pub(crate) request_response_information: Option<u8>,
    pub(crate) response_information: Option<String>,
    pub(crate) server_reference: Option<String>,
    pub(crate) reason_string: Option<String>,
    pub(crate) receive_maximum: Option<u16>,
    pub(crate) topic_alias_maximum: Option<u16>,
    pub(crate) topic_alias: Option<u16>,
    pub(crate) maximum_qos: Option<u8>,
    pub(crate) retain_available: Option<bool>,
    pub(crate) user_properties: Vec<(String, String)>,
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) wildcard_subscription_available: Option<bool>,
    pub(crate) subscription_identifiers_available: Option<bool>,
    pub(crate) shared_subscription_available: Option<bool>,
}

const TRUNCATED: &str = "property value runs past the property length";

fn zero_or_one(value: u8, what: &'static str) -> Result<u8, DecodeError> {
    if value > 1 {
        Err(DecodeError::ProtocolError(what))
    } else {
        Ok(value)
    }
}

/// Reads a Property Length and the properties it covers.
pub(crate) fn read(r: &mut Reader, allowed: &Allowed) -> Result<Props, DecodeError> {
    let len = r.varint("property length")? as usize;
    let mut p = r.sub(len, "property length exceeds the packet")?;
    let mut props = Props::default();
    let mut seen: u64 = 0;
    while !p.is_empty() {
        let id = p.u8(TRUNCATED)?;
        if !known(id) {
            return Err(DecodeError::UnknownProperty(id));
        }
        if !allowed.ids.contains(&id) {
            return Err(DecodeError::PropertyNotAllowed {
                property: id,
                packet: allowed.packet,
            });
        }
        let repeatable =
            id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && allowed.repeat_sub_id);
        let bit = 1u64 << (id & 63);
        if seen & bit != 0 && !repeatable {
            return Err(DecodeError::DuplicateProperty(id));
        }
        seen |= bit;
        read_one(&mut p, id, &mut props)?;
    }
    Ok(props)
}

fn known(id: u8) -> bool {
    matches!(
        id,
        0x01 | 0x02
            | 0x03
            | 0x08
            | 0x09
            | 0x0B
            | 0x11
            | 0x12
            | 0x13
            | 0x15
            | 0x16
            | 0x17
            | 0x18
            | 0x19
            | 0x1A
            | 0x1C
            | 0x1F
            | 0x21..=0x2A
    )
}

fn read_one(p: &mut Reader, id: u8, props: &mut Props) -> Result<(), DecodeError> {
    match id {
        PAYLOAD_FORMAT_INDICATOR => {
            props.payload_format_indicator = Some(zero_or_one(
                p.u8(TRUNCATED)?,
                "payload format indicator other than 0 or 1",
            )?)
        }
        MESSAGE_EXPIRY_INTERVAL => props.message_expiry_interval = Some(p.u32(TRUNCATED)?),
        CONTENT_TYPE => props.content_type = Some(p.string(TRUNCATED)?),
        RESPONSE_TOPIC => {
            let topic = p.string(TRUNCATED)?;
            // [MQTT-3.3.2-14]: a Response Topic is a topic name, without wildcards.
            if !crate::topic::valid_topic_name(&topic) {
                return Err(DecodeError::ProtocolError(
                    "response topic is not a topic name",
                ));
            }
            props.response_topic = Some(topic)
        }
        CORRELATION_DATA => props.correlation_data = Some(p.binary(TRUNCATED)?),
        SUBSCRIPTION_IDENTIFIER => {
            let id = p.varint(TRUNCATED)?;
            if id == 0 {
                return Err(DecodeError::ProtocolError("subscription identifier 0"));
            }
            props.subscription_identifiers.push(id)
        }
        SESSION_EXPIRY_INTERVAL => props.session_expiry_interval = Some(p.u32(TRUNCATED)?),
        ASSIGNED_CLIENT_IDENTIFIER => props.assigned_client_identifier = Some(p.string(TRUNCATED)?),
        SERVER_KEEP_ALIVE => props.server_keep_alive = Some(p.u16(TRUNCATED)?),
        AUTHENTICATION_METHOD => props.authentication_method = Some(p.string(TRUNCATED)?),
        AUTHENTICATION_DATA => props.authentication_data = Some(p.binary(TRUNCATED)?),
        REQUEST_PROBLEM_INFORMATION => {
            props.request_problem_information = Some(zero_or_one(
                p.u8(TRUNCATED)?,
                "request problem information other than 0 or 1",
            )?)
        }
        WILL_DELAY_INTERVAL => props.will_delay_interval = Some(p.u32(TRUNCATED)?),
        REQUEST_RESPONSE_INFORMATION => {
            props.request_response_information = Some(zero_or_one(
                p.u8(TRUNCATED)?,
                "request response information other than 0 or 1",
            )?)
        }
        RESPONSE_INFORMATION => props.response_information = Some(p.string(TRUNCATED)?),
        SERVER_REFERENCE => props.server_reference = Some(p.string(TRUNCATED)?),
        REASON_STRING => props.reason_string = Some(p.string(TRUNCATED)?),
        RECEIVE_MAXIMUM => {
            let v = p.u16(TRUNCATED)?;
            if v == 0 {
                return Err(DecodeError::ProtocolError("receive maximum 0"));
            }
            props.receive_maximum = Some(v)
        }
        TOPIC_ALIAS_MAXIMUM => props.topic_alias_maximum = Some(p.u16(TRUNCATED)?),
        TOPIC_ALIAS => {
            let v = p.u16(TRUNCATED)?;
            if v == 0 {
                return Err(DecodeError::TopicAliasInvalid);
            }
            props.topic_alias = Some(v)
        }
        MAXIMUM_QOS => {
            props.maximum_qos = Some(zero_or_one(
                p.u8(TRUNCATED)?,
                "maximum QoS other than 0 or 1",
            )?)
        }
        RETAIN_AVAILABLE => {
            props.retain_available =
                Some(zero_or_one(p.u8(TRUNCATED)?, "retain available other than 0 or 1")? == 1)
        }
        USER_PROPERTY => {
            let key = p.string(TRUNCATED)?;
            let value = p.string(TRUNCATED)?;
            props.user_properties.push((key, value))
        }
        MAXIMUM_PACKET_SIZE => {
            let v = p.u32(TRUNCATED)?;
            if v == 0 {
                return Err(DecodeError::ProtocolError("maximum packet size 0"));
            }
            props.maximum_packet_size = Some(v)
        }
        WILDCARD_SUBSCRIPTION_AVAILABLE => {
            props.wildcard_subscription_available =
                Some(zero_or_one(p.u8(TRUNCATED)?, "wildcard available other than 0 or 1")? == 1)
        }
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            props.subscription_identifiers_available = Some(
                zero_or_one(
                    p.u8(TRUNCATED)?,
                    "subscription identifiers available other than 0 or 1",
                )? == 1,
            )
        }
        SHARED_SUBSCRIPTION_AVAILABLE => {
            props.shared_subscription_available =
                Some(zero_or_one(p.u8(TRUNCATED)?, "shared available other than 0 or 1")? == 1)
        }
        _ => return Err(DecodeError::UnknownProperty(id)),
    }
    Ok(())
}

impl Props {
    pub(crate) fn into_publish(self) -> PublishProperties {
        PublishProperties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            topic_alias: self.topic_alias,
            response_topic: self.response_topic,
            correlation_data: self.correlation_data,
            user_properties: self.user_properties,
            subscription_identifiers: self.subscription_identifiers,
            content_type: self.content_type,
        }
    }

    pub(crate) fn into_ack(self) -> AckProperties {
        AckProperties {
            reason_string: self.reason_string,
            user_properties: self.user_properties,
        }
    }

    pub(crate) fn into_connect(self) -> Result<ConnectProperties, DecodeError> {
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            // MQTT 5.0 §3.1.2.11.10
            return Err(DecodeError::ProtocolError(
                "authentication data without authentication method",
            ));
        }
        Ok(ConnectProperties {
            session_expiry_interval: self.session_expiry_interval,
            receive_maximum: self.receive_maximum,
            maximum_packet_size: self.maximum_packet_size,
            topic_alias_maximum: self.topic_alias_maximum,
            request_response_information: self.request_response_information,
            request_problem_information: self.request_problem_information,
            user_properties: self.user_properties,
            authentication_method: self.authentication_method,
            authentication_data: self.authentication_data,
        })
    }

    pub(crate) fn into_connack(self) -> ConnAckProperties {
        ConnAckProperties {
            session_expiry_interval: self.session_expiry_interval,
            receive_maximum: self.receive_maximum,
            maximum_qos: self.maximum_qos,
            retain_available: self.retain_available,
            maximum_packet_size: self.maximum_packet_size,
            assigned_client_identifier: self.assigned_client_identifier,
            topic_alias_maximum: self.topic_alias_maximum,
            reason_string: self.reason_string,
            user_properties: self.user_properties,
            wildcard_subscription_available: self.wildcard_subscription_available,
            subscription_identifiers_available: self.subscription_identifiers_available,
            shared_subscription_available: self.shared_subscription_available,
            server_keep_alive: self.server_keep_alive,
            response_information: self.response_information,
            server_reference: self.server_reference,
            authentication_method: self.authentication_method,
            authentication_data: self.authentication_data,
        }
    }
}

/// One property to encode.
#[derive(Clone, Copy)]
pub(crate) enum Prop<'a> {
    Byte(u8, u8),
    Two(u8, u16),
    Four(u8, u32),
    Var(u8, u32),
    Str(u8, &'a str),
    Bin(u8, &'a [u8]),
    User(&'a str, &'a str),
}

impl Prop<'_> {
    fn len(self) -> Result<usize, EncodeError> {
        Ok(1 + match self {
            Prop::Byte(..) => 1,
            Prop::Two(..) => 2,
            Prop::Four(..) => 4,
            Prop::Var(_, v) => {
                if v == 0 || v as usize > MAX_VARINT {
                    return Err(EncodeError::InvalidField(
                        "subscription identifier outside 1..=268435455",
                    ));
                }
                varint_len(v as usize)
            }
            Prop::Str(_, s) => field_len(s.len())?,
            Prop::Bin(_, b) => field_len(b.len())?,
            Prop::User(k, v) => field_len(k.len())? + field_len(v.len())?,
        })
    }

    fn write(self, out: &mut BytesMut) {
        match self {
            Prop::Byte(id, v) => {
                out.put_u8(id);
                out.put_u8(v);
            }
            Prop::Two(id, v) => {
                out.put_u8(id);
                out.put_u16(v);
            }
            Prop::Four(id, v) => {
                out.put_u8(id);
                out.put_u32(v);
            }
            Prop::Var(id, v) => {
                out.put_u8(id);
                put_varint(out, v as usize);
            }
            Prop::Str(id, s) => {
                out.put_u8(id);
                put_binary(out, s.as_bytes());
            }
            Prop::Bin(id, b) => {
                out.put_u8(id);
                put_binary(out, b);
            }
            Prop::User(k, v) => {
                out.put_u8(USER_PROPERTY);
                put_binary(out, k.as_bytes());
                put_binary(out, v.as_bytes());
            }
        }
    }
}

/// Something that lists its properties, for [`block_len`] and [`write_block`].
pub(crate) trait Visit {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>));
}

/// Length of the properties alone (without the Property Length field).
pub(crate) fn props_len(v: &dyn Visit) -> Result<usize, EncodeError> {
    let mut total = 0usize;
    let mut err = None;
    v.visit(&mut |p| match p.len() {
        Ok(n) => total += n,
        Err(e) => err = Some(e),
    });
    match err {
        Some(e) => Err(e),
        None if total > MAX_VARINT => Err(EncodeError::RemainingLengthTooLarge(total)),
        None => Ok(total),
    }
}

/// Writes Property Length (`len` from [`props_len`]) and the properties.
pub(crate) fn write_block(v: &dyn Visit, len: usize, out: &mut BytesMut) {
    put_varint(out, len);
    v.visit(&mut |p| p.write(out));
}

fn opt_str(f: &mut dyn FnMut(Prop<'_>), id: u8, s: &Option<String>) {
    if let Some(s) = s {
        f(Prop::Str(id, s));
    }
}

fn opt_bin(f: &mut dyn FnMut(Prop<'_>), id: u8, b: &Option<Bytes>) {
    if let Some(b) = b {
        f(Prop::Bin(id, b));
    }
}

fn users(f: &mut dyn FnMut(Prop<'_>), list: &[(String, String)]) {
    for (k, v) in list {
        f(Prop::User(k, v));
    }
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

impl Visit for PublishProperties {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        // In identifier order, as paho-mqtt writes them.
        if let Some(v) = self.payload_format_indicator {
            f(Prop::Byte(PAYLOAD_FORMAT_INDICATOR, v));
        }
        if let Some(v) = self.message_expiry_interval {
            f(Prop::Four(MESSAGE_EXPIRY_INTERVAL, v));
        }
        opt_str(f, CONTENT_TYPE, &self.content_type);
        opt_str(f, RESPONSE_TOPIC, &self.response_topic);
        opt_bin(f, CORRELATION_DATA, &self.correlation_data);
        for id in &self.subscription_identifiers {
            f(Prop::Var(SUBSCRIPTION_IDENTIFIER, *id));
        }
        if let Some(v) = self.topic_alias {
            f(Prop::Two(TOPIC_ALIAS, v));
        }
        users(f, &self.user_properties);
    }
}

/// Will properties: a will's delay plus the PUBLISH properties a will may carry.
pub(crate) struct WillProps<'a> {
    pub(crate) delay: Option<u32>,
    pub(crate) props: &'a PublishProperties,
}

impl Visit for WillProps<'_> {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        if let Some(v) = self.delay {
            f(Prop::Four(WILL_DELAY_INTERVAL, v));
        }
        let p = self.props;
        if let Some(v) = p.payload_format_indicator {
            f(Prop::Byte(PAYLOAD_FORMAT_INDICATOR, v));
        }
        if let Some(v) = p.message_expiry_interval {
            f(Prop::Four(MESSAGE_EXPIRY_INTERVAL, v));
        }
        opt_str(f, CONTENT_TYPE, &p.content_type);
        opt_str(f, RESPONSE_TOPIC, &p.response_topic);
        opt_bin(f, CORRELATION_DATA, &p.correlation_data);
        users(f, &p.user_properties);
    }
}

impl Visit for ConnectProperties {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        if let Some(v) = self.session_expiry_interval {
            f(Prop::Four(SESSION_EXPIRY_INTERVAL, v));
        }
        if let Some(v) = self.receive_maximum {
            f(Prop::Two(RECEIVE_MAXIMUM, v));
        }
        if let Some(v) = self.maximum_packet_size {
            f(Prop::Four(MAXIMUM_PACKET_SIZE, v));
        }
        if let Some(v) = self.topic_alias_maximum {
            f(Prop::Two(TOPIC_ALIAS_MAXIMUM, v));
        }
        if let Some(v) = self.request_response_information {
            f(Prop::Byte(REQUEST_RESPONSE_INFORMATION, v));
        }
        if let Some(v) = self.request_problem_information {
            f(Prop::Byte(REQUEST_PROBLEM_INFORMATION, v));
        }
        users(f, &self.user_properties);
        opt_str(f, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_bin(f, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Visit for AckProperties {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        opt_str(f, REASON_STRING, &self.reason_string);
        users(f, &self.user_properties);
    }
}

impl Visit for ConnAckProperties {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        if let Some(v) = self.session_expiry_interval {
            f(Prop::Four(SESSION_EXPIRY_INTERVAL, v));
        }
        if let Some(v) = self.receive_maximum {
            f(Prop::Two(RECEIVE_MAXIMUM, v));
        }
        if let Some(v) = self.maximum_qos {
            f(Prop::Byte(MAXIMUM_QOS, v));
        }
        if let Some(v) = self.retain_available {
            f(Prop::Byte(RETAIN_AVAILABLE, flag(v)));
        }
        if let Some(v) = self.maximum_packet_size {
            f(Prop::Four(MAXIMUM_PACKET_SIZE, v));
        }
        opt_str(
            f,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        if let Some(v) = self.topic_alias_maximum {
            f(Prop::Two(TOPIC_ALIAS_MAXIMUM, v));
        }
        opt_str(f, REASON_STRING, &self.reason_string);
        users(f, &self.user_properties);
        if let Some(v) = self.wildcard_subscription_available {
            f(Prop::Byte(WILDCARD_SUBSCRIPTION_AVAILABLE, flag(v)));
        }
        if let Some(v) = self.subscription_identifiers_available {
            f(Prop::Byte(SUBSCRIPTION_IDENTIFIER_AVAILABLE, flag(v)));
        }
        if let Some(v) = self.shared_subscription_available {
            f(Prop::Byte(SHARED_SUBSCRIPTION_AVAILABLE, flag(v)));
        }
        if let Some(v) = self.server_keep_alive {
            f(Prop::Two(SERVER_KEEP_ALIVE, v));
        }
        opt_str(f, RESPONSE_INFORMATION, &self.response_information);
        opt_str(f, SERVER_REFERENCE, &self.server_reference);
        opt_str(f, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_bin(f, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Visit for Disconnect {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        if let Some(v) = self.session_expiry_interval {
            f(Prop::Four(SESSION_EXPIRY_INTERVAL, v));
        }
        opt_str(f, REASON_STRING, &self.reason_string);
        users(f, &self.user_properties);
        opt_str(f, SERVER_REFERENCE, &self.server_reference);
    }
}

impl Visit for Auth {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        opt_str(f, AUTHENTICATION_METHOD, &self.authentication_method);
        opt_bin(f, AUTHENTICATION_DATA, &self.authentication_data);
        opt_str(f, REASON_STRING, &self.reason_string);
        users(f, &self.user_properties);
    }
}

/// SUBSCRIBE properties.
pub(crate) struct SubscribeProps<'a> {
    pub(crate) id: Option<u32>,
    pub(crate) users: &'a [(String, String)],
}

impl Visit for SubscribeProps<'_> {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        if let Some(v) = self.id {
            f(Prop::Var(SUBSCRIPTION_IDENTIFIER, v));
        }
        users(f, self.users);
    }
}

/// UNSUBSCRIBE properties (user properties only).
pub(crate) struct UserProps<'a>(pub(crate) &'a [(String, String)]);

impl Visit for UserProps<'_> {
    fn visit(&self, f: &mut dyn FnMut(Prop<'_>)) {
        users(f, self.0);
    }
}
