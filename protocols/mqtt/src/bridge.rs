//! The seam to `mqttbytes` 0.6: the packets it decodes or encodes correctly once wrapped,
//! and the fixes around it.
//!
//! Used from mqttbytes, with the wrapping each needs:
//! - decode, v3.1.1: PUBLISH (then: topic checked for U+0000 and wildcards), SUBSCRIBE
//!   (first: option bytes' reserved bits; then: at least one filter, packet id ≠ 0,
//!   U+0000), UNSUBSCRIBE (then: at least one filter, packet id ≠ 0, U+0000),
//!   PUBACK/PUBREC/PUBREL/PUBCOMP (first: remaining length exactly 2; then: packet id ≠ 0),
//!   and on the client side CONNACK (first: length 2, reserved flag bits), SUBACK, UNSUBACK.
//! - encode, v3.1.1: CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
//!   SUBSCRIBE, UNSUBSCRIBE, PINGREQ, PINGRESP, DISCONNECT (first: string lengths, since
//!   mqttbytes silently truncates a length over 65,535 to 16 bits).
//! - encode, v5: SUBSCRIBE, UNSUBSCRIBE, SUBACK, DISCONNECT, CONNACK (always with a
//!   property block: mqttbytes omits the mandatory Property Length of a CONNACK without
//!   properties).
//!
//! Hand-written instead (see `read.rs` / `write.rs`), because mqttbytes 0.6:
//! - `check`/`read` compare the limit with the remaining length, not the packet size, do
//!   not check reserved fixed-header flags, accept PINGREQ/DISCONNECT with a body, and
//!   reject a v5 DISCONNECT with remaining length 0 or 1 (the common `E0 00`);
//! - CONNECT: password is a `String` (binary passwords fail), an empty user name or
//!   password is dropped, the reserved flag bit, password-without-user-name (3.1.1) and
//!   trailing bytes are not checked, "MQIsdp" is not told apart;
//! - every v5 property block: a property may run past the Property Length into the
//!   payload, duplicates are accepted (last wins), Receive Maximum 0, Topic Alias 0,
//!   Subscription Identifier 0 and non-boolean booleans are accepted;
//! - v5 UNSUBSCRIBE decode prints to stderr (`dbg!`) on every packet;
//! - there is no AUTH packet at all;
//! - PUBLISH encode goes through hand-written code for speed (no topic copy, size known
//!   before any byte is written); tests check that mqttbytes' writer and this one produce
//!   packets that decode alike (byte-identical for 3.1.1).

use bytes::{Bytes, BytesMut};
use mqttbytes::{v4, v5, FixedHeader};

use crate::error::{DecodeError, EncodeError};
use crate::packet::{
    ConnAck, ConnAckProperties, Disconnect, Publish, QoS, SubAck, Subscribe, SubscribeFilter,
    UnsubAck, Unsubscribe,
};
use crate::props;
use crate::reason;
use crate::wire::{check_mqtt_str, field_len, Reader};

/// What the codec knows about a frame: the first byte, the header length and the whole
/// frame (fixed header included, as mqttbytes' `read` functions expect).
pub(crate) struct Frame {
    pub(crate) byte1: u8,
    pub(crate) header_len: usize,
    pub(crate) bytes: Bytes,
}

impl Frame {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.header_len
    }

    fn fixed_header(&self) -> FixedHeader {
        FixedHeader::new(self.byte1, self.header_len - 1, self.remaining())
    }
}

fn map_err(e: mqttbytes::Error) -> DecodeError {
    use mqttbytes::Error as E;
    match e {
        E::TopicNotUtf8 => DecodeError::InvalidUtf8,
        E::PacketIdZero => DecodeError::ProtocolError("packet identifier 0"),
        E::InvalidQoS(_) => DecodeError::Malformed("QoS 3"),
        E::BoundaryCrossed(_) => DecodeError::Malformed("string length past the packet end"),
        E::InvalidConnectReturnCode(_) => DecodeError::Malformed("invalid CONNACK return code"),
        E::InvalidSubscribeReasonCode(_) => DecodeError::Malformed("invalid SUBACK return code"),
        E::PayloadSizeIncorrect => DecodeError::Malformed("wrong remaining length"),
        _ => DecodeError::Malformed("truncated packet"),
    }
}

fn qos(q: mqttbytes::QoS) -> QoS {
    match q {
        mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn mqttbytes_qos(q: QoS) -> mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
    }
}

fn nonzero_id(id: u16) -> Result<u16, DecodeError> {
    if id == 0 {
        Err(DecodeError::ProtocolError("packet identifier 0"))
    } else {
        Ok(id)
    }
}

/// Checks a PUBLISH topic: U+0000 is malformed [MQTT-1.5.3-2]; wildcards or an empty name
/// (without a v5 topic alias) make an invalid topic name [MQTT-3.3.2-1, -2].
pub(crate) fn check_publish_topic(topic: &str, has_alias: bool) -> Result<(), DecodeError> {
    check_mqtt_str(topic)?;
    if (topic.is_empty() && has_alias) || crate::topic::valid_topic_name(topic) {
        Ok(())
    } else {
        Err(DecodeError::TopicNameInvalid)
    }
}

// ---------------------------------------------------------------- decode, v3.1.1

pub(crate) fn publish_v4(frame: Frame) -> Result<Publish, DecodeError> {
    let p = v4::Publish::read(frame.fixed_header(), frame.bytes).map_err(map_err)?;
    check_publish_topic(&p.topic, false)?;
    Ok(Publish {
        dup: p.dup,
        qos: qos(p.qos),
        retain: p.retain,
        topic: p.topic,
        packet_id: p.pkid,
        payload: p.payload,
        properties: Default::default(),
    })
}

pub(crate) fn subscribe_v4(frame: Frame) -> Result<Subscribe, DecodeError> {
    // mqttbytes reads only the two QoS bits of each option byte; 3.1.1 requires the other
    // six to be zero [MQTT-3.8.3-4]. Walk the payload once to check them.
    let mut r = Reader::new(frame.bytes.slice(frame.header_len..));
    r.u16("SUBSCRIBE packet identifier")?;
    while !r.is_empty() {
        r.binary("topic filter")?;
        if r.u8("subscription options")? & 0xFC != 0 {
            return Err(DecodeError::Malformed(
                "reserved bits set in subscription options",
            ));
        }
    }
    let s = v4::Subscribe::read(frame.fixed_header(), frame.bytes).map_err(map_err)?;
    if s.filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "SUBSCRIBE with no topic filters",
        ));
    }
    let mut filters = Vec::with_capacity(s.filters.len());
    for f in s.filters {
        check_mqtt_str(&f.path)?;
        filters.push(SubscribeFilter {
            filter: f.path,
            qos: qos(f.qos),
            ..Default::default()
        });
    }
    Ok(Subscribe {
        packet_id: nonzero_id(s.pkid)?,
        filters,
        subscription_identifier: None,
        user_properties: Vec::new(),
    })
}

pub(crate) fn unsubscribe_v4(frame: Frame) -> Result<Unsubscribe, DecodeError> {
    let u = v4::Unsubscribe::read(frame.fixed_header(), frame.bytes).map_err(map_err)?;
    if u.topics.is_empty() {
        return Err(DecodeError::ProtocolError(
            "UNSUBSCRIBE with no topic filters",
        ));
    }
    for t in &u.topics {
        check_mqtt_str(t)?;
    }
    Ok(Unsubscribe {
        packet_id: nonzero_id(u.pkid)?,
        filters: u.topics,
        user_properties: Vec::new(),
    })
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (by the packet type in `byte1`): the packet id.
pub(crate) fn ack_v4(frame: Frame) -> Result<u16, DecodeError> {
    // mqttbytes accepts (and ignores) bytes after the packet id.
    if frame.remaining() != 2 {
        return Err(DecodeError::Malformed("acknowledgement length is not 2"));
    }
    let fh = frame.fixed_header();
    let id = match frame.byte1 >> 4 {
        4 => v4::PubAck::read(fh, frame.bytes).map(|a| a.pkid),
        5 => v4::PubRec::read(fh, frame.bytes).map(|a| a.pkid),
        6 => v4::PubRel::read(fh, frame.bytes).map(|a| a.pkid),
        _ => v4::PubComp::read(fh, frame.bytes).map(|a| a.pkid),
    }
    .map_err(map_err)?;
    nonzero_id(id)
}

pub(crate) fn connack_v4(frame: Frame) -> Result<ConnAck, DecodeError> {
    if frame.remaining() != 2 {
        return Err(DecodeError::Malformed("CONNACK length is not 2"));
    }
    // mqttbytes ignores the reserved bits 7..1 of the acknowledge flags [MQTT-3.2.2-1].
    if frame.bytes.get(frame.header_len).copied().unwrap_or(0) & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved CONNACK flag bits set"));
    }
    let c = v4::ConnAck::read(frame.fixed_header(), frame.bytes).map_err(map_err)?;
    if c.session_present && c.code != v4::ConnectReturnCode::Success {
        // [MQTT-3.2.2-4]
        return Err(DecodeError::ProtocolError(
            "session present on a refused CONNACK",
        ));
    }
    Ok(ConnAck {
        session_present: c.session_present,
        reason: reason::connack_v5_from_v4(c.code as u8),
        properties: ConnAckProperties::default(),
    })
}

pub(crate) fn suback_v4(frame: Frame) -> Result<SubAck, DecodeError> {
    let s = v4::SubAck::read(frame.fixed_header(), frame.bytes).map_err(map_err)?;
    Ok(SubAck {
        packet_id: nonzero_id(s.pkid)?,
        reasons: s
            .return_codes
            .iter()
            .map(|c| match c {
                v4::SubscribeReasonCode::Success(q) => *q as u8,
                v4::SubscribeReasonCode::Failure => 0x80,
            })
            .collect(),
        properties: Default::default(),
    })
}

pub(crate) fn unsuback_v4(frame: Frame) -> Result<UnsubAck, DecodeError> {
    let u = v4::UnsubAck::read(frame.fixed_header(), frame.bytes).map_err(map_err)?;
    Ok(UnsubAck {
        packet_id: nonzero_id(u.pkid)?,
        ..Default::default()
    })
}

// ---------------------------------------------------------------- encode

/// mqttbytes' writers fail only for packet id 0 and a remaining length over the maximum;
/// both are checked before calling them, so this is a backstop.
fn enc(r: Result<usize, mqttbytes::Error>) -> Result<(), EncodeError> {
    match r {
        Ok(_) => Ok(()),
        Err(mqttbytes::Error::PacketIdZero) => Err(EncodeError::PacketIdZero),
        Err(_) => Err(EncodeError::InvalidField("remaining length over 268435455")),
    }
}

fn id(packet_id: u16) -> Result<u16, EncodeError> {
    if packet_id == 0 {
        Err(EncodeError::PacketIdZero)
    } else {
        Ok(packet_id)
    }
}

/// The largest remaining length a SUBSCRIBE/UNSUBSCRIBE can have; checked here because
/// mqttbytes computes it unchecked.
fn check_filters<'a>(filters: impl Iterator<Item = &'a str>) -> Result<(), EncodeError> {
    let mut total = 0usize;
    let mut any = false;
    for f in filters {
        any = true;
        total = total.saturating_add(field_len(f.len())? + 1);
    }
    if !any {
        return Err(EncodeError::InvalidField(
            "SUBSCRIBE/UNSUBSCRIBE without topic filters",
        ));
    }
    if total > crate::wire::MAX_VARINT {
        return Err(EncodeError::RemainingLengthTooLarge(total));
    }
    Ok(())
}

pub(crate) fn connack_v4_write(c: &ConnAck, out: &mut BytesMut) -> Result<(), EncodeError> {
    let code = match reason::connack_v4_from_v5(c.reason) {
        0 => v4::ConnectReturnCode::Success,
        1 => v4::ConnectReturnCode::RefusedProtocolVersion,
        2 => v4::ConnectReturnCode::BadClientId,
        4 => v4::ConnectReturnCode::BadUserNamePassword,
        5 => v4::ConnectReturnCode::NotAuthorized,
        _ => v4::ConnectReturnCode::ServiceUnavailable,
    };
    // [MQTT-3.2.2-4]: a refused CONNACK has Session Present 0.
    let session_present = c.session_present && code == v4::ConnectReturnCode::Success;
    enc(v4::ConnAck::new(code, session_present).write(out))
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (3.1.1 has no reason codes or properties).
pub(crate) fn ack_v4_write(
    kind: u8,
    packet_id: u16,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let pkid = id(packet_id)?;
    enc(match kind {
        4 => v4::PubAck::new(pkid).write(out),
        5 => v4::PubRec::new(pkid).write(out),
        6 => v4::PubRel::new(pkid).write(out),
        _ => v4::PubComp::new(pkid).write(out),
    })
}

pub(crate) fn suback_v4_write(s: &SubAck, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mut codes = Vec::with_capacity(s.reasons.len());
    for &r in &s.reasons {
        codes.push(match r {
            0 => v4::SubscribeReasonCode::Success(mqttbytes::QoS::AtMostOnce),
            1 => v4::SubscribeReasonCode::Success(mqttbytes::QoS::AtLeastOnce),
            2 => v4::SubscribeReasonCode::Success(mqttbytes::QoS::ExactlyOnce),
            // Every v5 failure code is 0x80 "Failure" in 3.1.1.
            0x80..=0xFF => v4::SubscribeReasonCode::Failure,
            code => {
                return Err(EncodeError::InvalidReasonCode {
                    code,
                    packet: "SUBACK",
                })
            }
        });
    }
    if codes.is_empty() {
        return Err(EncodeError::InvalidField("SUBACK without return codes"));
    }
    enc(v4::SubAck::new(id(s.packet_id)?, codes).write(out))
}

pub(crate) fn unsuback_v4_write(u: &UnsubAck, out: &mut BytesMut) -> Result<(), EncodeError> {
    enc(v4::UnsubAck::new(id(u.packet_id)?).write(out))
}

pub(crate) fn subscribe_v4_write(s: &Subscribe, out: &mut BytesMut) -> Result<(), EncodeError> {
    check_filters(s.filters.iter().map(|f| f.filter.as_str()))?;
    let mut sub = v4::Subscribe::empty_subscribe();
    sub.pkid = id(s.packet_id)?;
    for f in &s.filters {
        sub.filters.push(v4::SubscribeFilter::new(
            f.filter.clone(),
            mqttbytes_qos(f.qos),
        ));
    }
    enc(sub.write(out))
}

pub(crate) fn unsubscribe_v4_write(u: &Unsubscribe, out: &mut BytesMut) -> Result<(), EncodeError> {
    check_filters(u.filters.iter().map(String::as_str))?;
    let unsub = v4::Unsubscribe {
        pkid: id(u.packet_id)?,
        topics: u.filters.clone(),
    };
    enc(unsub.write(out))
}

pub(crate) fn pingreq_write(out: &mut BytesMut) -> Result<(), EncodeError> {
    enc(v4::PingReq.write(out))
}

pub(crate) fn pingresp_write(out: &mut BytesMut) -> Result<(), EncodeError> {
    enc(v4::PingResp.write(out))
}

pub(crate) fn disconnect_v4_write(out: &mut BytesMut) -> Result<(), EncodeError> {
    enc(v4::Disconnect.write(out))
}

fn users_checked(list: &[(String, String)]) -> Result<Vec<(String, String)>, EncodeError> {
    props::props_len(&props::UserProps(list))?;
    Ok(list.to_vec())
}

pub(crate) fn subscribe_v5_write(s: &Subscribe, out: &mut BytesMut) -> Result<(), EncodeError> {
    check_filters(s.filters.iter().map(|f| f.filter.as_str()))?;
    // Validates the subscription identifier range and the user property lengths.
    props::props_len(&props::SubscribeProps {
        id: s.subscription_identifier,
        users: &s.user_properties,
    })?;
    let mut filters = Vec::with_capacity(s.filters.len());
    for f in &s.filters {
        let mut filter = v5::SubscribeFilter::new(f.filter.clone(), mqttbytes_qos(f.qos));
        filter.set_nolocal(f.no_local);
        filter.set_preserve_retain(f.retain_as_published);
        filter.set_retain_forward_rule(match f.retain_handling {
            0 => v5::RetainForwardRule::OnEverySubscribe,
            1 => v5::RetainForwardRule::OnNewSubscribe,
            2 => v5::RetainForwardRule::Never,
            _ => return Err(EncodeError::InvalidField("retain handling 3")),
        });
        filters.push(filter);
    }
    let properties = if s.subscription_identifier.is_none() && s.user_properties.is_empty() {
        None
    } else {
        Some(v5::SubscribeProperties {
            id: s.subscription_identifier.map(|v| v as usize),
            user_properties: users_checked(&s.user_properties)?,
        })
    };
    enc(v5::Subscribe {
        pkid: id(s.packet_id)?,
        filters,
        properties,
    }
    .write(out))
}

pub(crate) fn unsubscribe_v5_write(u: &Unsubscribe, out: &mut BytesMut) -> Result<(), EncodeError> {
    check_filters(u.filters.iter().map(String::as_str))?;
    let properties = if u.user_properties.is_empty() {
        None
    } else {
        Some(v5::UnsubscribeProperties {
            user_properties: users_checked(&u.user_properties)?,
        })
    };
    enc(v5::Unsubscribe {
        pkid: id(u.packet_id)?,
        filters: u.filters.clone(),
        properties,
    }
    .write(out))
}

pub(crate) fn suback_v5_write(s: &SubAck, out: &mut BytesMut) -> Result<(), EncodeError> {
    props::props_len(&s.properties)?;
    if s.reasons.is_empty() {
        return Err(EncodeError::InvalidField("SUBACK without reason codes"));
    }
    let mut codes = Vec::with_capacity(s.reasons.len());
    for &code in &s.reasons {
        codes.push(v5::SubscribeReasonCode::try_from(code).map_err(|_| {
            EncodeError::InvalidReasonCode {
                code,
                packet: "SUBACK",
            }
        })?);
    }
    let properties = if s.properties == Default::default() {
        None
    } else {
        Some(v5::SubAckProperties {
            reason_string: s.properties.reason_string.clone(),
            user_properties: s.properties.user_properties.clone(),
        })
    };
    enc(v5::SubAck {
        pkid: id(s.packet_id)?,
        return_codes: codes,
        properties,
    }
    .write(out))
}

pub(crate) fn disconnect_v5_write(d: &Disconnect, out: &mut BytesMut) -> Result<(), EncodeError> {
    props::props_len(d)?;
    let reason_code = v5::DisconnectReasonCode::try_from(d.reason).map_err(|_| {
        EncodeError::InvalidReasonCode {
            code: d.reason,
            packet: "DISCONNECT",
        }
    })?;
    let properties = if d.session_expiry_interval.is_none()
        && d.reason_string.is_none()
        && d.user_properties.is_empty()
        && d.server_reference.is_none()
    {
        None
    } else {
        Some(v5::DisconnectProperties {
            session_expiry_interval: d.session_expiry_interval,
            reason_string: d.reason_string.clone(),
            user_properties: d.user_properties.clone(),
            server_reference: d.server_reference.clone(),
        })
    };
    enc(v5::Disconnect {
        reason_code,
        properties,
    }
    .write(out))
}

fn connack_code_v5(code: u8) -> Option<v5::ConnectReturnCode> {
    use v5::ConnectReturnCode as C;
    Some(match code {
        0x00 => C::Success,
        0x80 => C::UnspecifiedError,
        0x81 => C::MalformedPacket,
        0x82 => C::ProtocolError,
        0x83 => C::ImplementationSpecificError,
        0x84 => C::UnsupportedProtocolVersion,
        0x85 => C::ClientIdentifierNotValid,
        0x86 => C::BadUserNamePassword,
        0x87 => C::NotAuthorized,
        0x88 => C::ServerUnavailable,
        0x89 => C::ServerBusy,
        0x8A => C::Banned,
        0x8C => C::BadAuthenticationMethod,
        0x90 => C::TopicNameInvalid,
        0x95 => C::PacketTooLarge,
        0x97 => C::QuotaExceeded,
        0x99 => C::PayloadFormatInvalid,
        0x9A => C::RetainNotSupported,
        0x9B => C::QoSNotSupported,
        0x9C => C::UseAnotherServer,
        0x9D => C::ServerMoved,
        0x9F => C::ConnectionRateExceeded,
        _ => return None,
    })
}

pub(crate) fn connack_v5_write(c: &ConnAck, out: &mut BytesMut) -> Result<(), EncodeError> {
    props::props_len(&c.properties)?;
    let code = connack_code_v5(c.reason).ok_or(EncodeError::InvalidReasonCode {
        code: c.reason,
        packet: "CONNACK",
    })?;
    let p = &c.properties;
    let properties = v5::ConnAckProperties {
        session_expiry_interval: p.session_expiry_interval,
        receive_max: p.receive_maximum,
        max_qos: p.maximum_qos,
        retain_available: p.retain_available.map(u8::from),
        max_packet_size: p.maximum_packet_size,
        assigned_client_identifier: p.assigned_client_identifier.clone(),
        topic_alias_max: p.topic_alias_maximum,
        reason_string: p.reason_string.clone(),
        user_properties: p.user_properties.clone(),
        wildcard_subscription_available: p.wildcard_subscription_available.map(u8::from),
        subscription_identifiers_available: p.subscription_identifiers_available.map(u8::from),
        shared_subscription_available: p.shared_subscription_available.map(u8::from),
        server_keep_alive: p.server_keep_alive,
        response_information: p.response_information.clone(),
        server_reference: p.server_reference.clone(),
        authentication_method: p.authentication_method.clone(),
        authentication_data: p.authentication_data.clone(),
    };
    // [MQTT-3.2.2-6]: a refused CONNACK has Session Present 0.
    let session_present = c.session_present && c.reason < 0x80;
    enc(v5::ConnAck {
        session_present,
        code,
        // Always Some: with None mqttbytes leaves out the Property Length, which a v5
        // CONNACK must carry (MQTT 5.0 §3.2.2.3).
        properties: Some(properties),
    }
    .write(out))
}
