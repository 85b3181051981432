//! Hand-written packet body decoders: CONNECT (both versions) and every v5 packet whose
//! properties mqttbytes 0.6 parses too loosely (see the `bridge` module for the list).
//!
//! Each function gets the body (variable header + payload) of one complete packet and must
//! consume it exactly: bytes left over are a Malformed Packet.

use bytes::Bytes;

use crate::bridge::check_publish_topic;
use crate::error::DecodeError;
use crate::packet::{
    AckProperties, Auth, ConnAck, Connect, Disconnect, ProtocolVersion, Publish, QoS, SubAck,
    Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will,
};
use crate::props::{self, Props};
use crate::reason;
use crate::wire::Reader;

/// CONNECT. `level` is set as soon as the protocol level is known (4 or 5), even when the
/// rest of the packet then fails, so the listener can answer in the client's version.
pub(crate) fn connect(
    body: Bytes,
    level: &mut Option<ProtocolVersion>,
) -> Result<Connect, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.binary("protocol name")?;
    let lvl = r.u8("protocol level")?;
    let protocol = match (&name[..], lvl) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        // MQTT 3.1 announced itself as "MQIsdp" level 3.
        (b"MQTT", l) | (b"MQIsdp", l) => return Err(DecodeError::UnsupportedProtocolVersion(l)),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    *level = Some(protocol);
    let v5 = protocol == ProtocolVersion::V5;

    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved connect flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        // [MQTT-3.1.2-11, -13, -15]
        return Err(DecodeError::Malformed(
            "will QoS or retain set without will flag",
        ));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?; // [MQTT-3.1.2-14]
    if !v5 && password_flag && !username_flag {
        // [MQTT-3.1.2-22]
        return Err(DecodeError::Malformed(
            "password flag without user name flag",
        ));
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = if v5 {
        props::read(&mut r, &props::CONNECT)?.into_connect()?
    } else {
        Default::default()
    };

    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let (delay_interval, will_props) = if v5 {
            let p = props::read(&mut r, &props::WILL)?;
            (p.will_delay_interval, p.into_publish())
        } else {
            (None, Default::default())
        };
        let topic = r.string("will topic")?;
        check_publish_topic(&topic, false)?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties: will_props,
            delay_interval,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary("password")?)
    } else {
        None
    };
    r.finish("bytes after the CONNECT payload")?;
    Ok(Connect {
        protocol,
        client_id,
        clean_start,
        keep_alive,
        username,
        password,
        will,
        properties,
    })
}

/// v5 PUBLISH. `from_client` forbids Subscription Identifiers [MQTT-3.3.4-6].
pub(crate) fn publish_v5(
    byte1: u8,
    body: Bytes,
    from_client: bool,
) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((byte1 >> 1) & 0x03).ok_or(DecodeError::Malformed("QoS 3"))?;
    let mut r = Reader::new(body);
    let topic = r.string("topic name")?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        let id = r.u16("packet identifier")?;
        if id == 0 {
            return Err(DecodeError::ProtocolError("packet identifier 0"));
        }
        id
    };
    let props = props::read(&mut r, &props::PUBLISH)?;
    if from_client && !props.subscription_identifiers.is_empty() {
        return Err(DecodeError::ProtocolError(
            "subscription identifier in a client PUBLISH",
        ));
    }
    check_publish_topic(&topic, props.topic_alias.is_some())?;
    Ok(Publish {
        dup: byte1 & 0x08 != 0,
        qos,
        retain: byte1 & 0x01 != 0,
        topic,
        packet_id,
        properties: props.into_publish(),
        payload: r.rest(),
    })
}

/// v5 PUBACK/PUBREC/PUBREL/PUBCOMP: remaining length 2 means reason 0 and no properties,
/// 3 means no properties (MQTT 5.0 §3.4.2.1).
pub(crate) fn ack_v5(
    body: Bytes,
    valid: fn(u8) -> bool,
) -> Result<(u16, u8, AckProperties), DecodeError> {
    let mut r = Reader::new(body);
    let id = r.u16("packet identifier")?;
    if id == 0 {
        return Err(DecodeError::ProtocolError("packet identifier 0"));
    }
    if r.is_empty() {
        return Ok((id, reason::SUCCESS, AckProperties::default()));
    }
    let code = r.u8("reason code")?;
    if !valid(code) {
        return Err(DecodeError::ProtocolError("invalid reason code"));
    }
    let props = if r.is_empty() {
        AckProperties::default()
    } else {
        props::read(&mut r, &props::ACK)?.into_ack()
    };
    r.finish("bytes after the acknowledgement properties")?;
    Ok((id, code, props))
}

pub(crate) fn subscribe_v5(body: Bytes) -> Result<Subscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = r.u16("packet identifier")?;
    if packet_id == 0 {
        return Err(DecodeError::ProtocolError("packet identifier 0"));
    }
    let Props {
        mut subscription_identifiers,
        user_properties,
        ..
    } = props::read(&mut r, &props::SUBSCRIBE)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let options = r.u8("subscription options")?;
        if options & 0xC0 != 0 {
            return Err(DecodeError::Malformed(
                "reserved bits set in subscription options",
            ));
        }
        let qos = QoS::from_u8(options & 0x03).ok_or(DecodeError::Malformed("QoS 3"))?;
        let retain_handling = (options >> 4) & 0x03;
        if retain_handling == 3 {
            return Err(DecodeError::ProtocolError("retain handling 3"));
        }
        let no_local = options & 0x04 != 0;
        if no_local && filter.starts_with("$share/") {
            // [MQTT-3.8.3-4]
            return Err(DecodeError::ProtocolError(
                "No Local on a shared subscription",
            ));
        }
        filters.push(SubscribeFilter {
            filter,
            qos,
            no_local,
            retain_as_published: options & 0x08 != 0,
            retain_handling,
        });
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "SUBSCRIBE with no topic filters",
        ));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        subscription_identifier: subscription_identifiers.pop(),
        user_properties,
    })
}

pub(crate) fn unsubscribe_v5(body: Bytes) -> Result<Unsubscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = r.u16("packet identifier")?;
    if packet_id == 0 {
        return Err(DecodeError::ProtocolError("packet identifier 0"));
    }
    let user_properties = props::read(&mut r, &props::UNSUBSCRIBE)?.user_properties;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("topic filter")?);
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "UNSUBSCRIBE with no topic filters",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        user_properties,
    })
}

/// v5 DISCONNECT: remaining length 0 means reason 0 and no properties, 1 means no
/// properties (MQTT 5.0 §3.14.2.1).
pub(crate) fn disconnect_v5(body: Bytes) -> Result<Disconnect, DecodeError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Ok(Disconnect::default());
    }
    let code = r.u8("reason code")?;
    if !reason::valid_disconnect(code) {
        return Err(DecodeError::ProtocolError("invalid DISCONNECT reason code"));
    }
    let p = if r.is_empty() {
        Props::default()
    } else {
        props::read(&mut r, &props::DISCONNECT)?
    };
    r.finish("bytes after the DISCONNECT properties")?;
    Ok(Disconnect {
        reason: code,
        session_expiry_interval: p.session_expiry_interval,
        reason_string: p.reason_string,
        user_properties: p.user_properties,
        server_reference: p.server_reference,
    })
}

/// AUTH (v5 only): remaining length 0 means reason 0 and no properties.
pub(crate) fn auth(body: Bytes) -> Result<Auth, DecodeError> {
    let mut r = Reader::new(body);
    if r.is_empty() {
        return Ok(Auth::default());
    }
    let code = r.u8("reason code")?;
    if !reason::valid_auth(code) {
        return Err(DecodeError::ProtocolError("invalid AUTH reason code"));
    }
    let p = if r.is_empty() {
        Props::default()
    } else {
        props::read(&mut r, &props::AUTH)?
    };
    r.finish("bytes after the AUTH properties")?;
    Ok(Auth {
        reason: code,
        authentication_method: p.authentication_method,
        authentication_data: p.authentication_data,
        reason_string: p.reason_string,
        user_properties: p.user_properties,
    })
}

/// v5 CONNACK (client side).
pub(crate) fn connack_v5(body: Bytes) -> Result<ConnAck, DecodeError> {
    let mut r = Reader::new(body);
    let flags = r.u8("acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved CONNACK flag bits set"));
    }
    let code = r.u8("reason code")?;
    if !reason::valid_connack(code) {
        return Err(DecodeError::ProtocolError("invalid CONNACK reason code"));
    }
    if flags & 0x01 != 0 && code >= 0x80 {
        // [MQTT-3.2.2-6]
        return Err(DecodeError::ProtocolError(
            "session present on a refused CONNACK",
        ));
    }
    let properties = props::read(&mut r, &props::CONNACK)?.into_connack();
    r.finish("bytes after the CONNACK properties")?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason: code,
        properties,
    })
}

/// v5 SUBACK or UNSUBACK (client side): packet id, properties, one reason per filter.
fn reasons_ack(
    body: Bytes,
    valid: fn(u8) -> bool,
) -> Result<(u16, Vec<u8>, AckProperties), DecodeError> {
    let mut r = Reader::new(body);
    let id = r.u16("packet identifier")?;
    if id == 0 {
        return Err(DecodeError::ProtocolError("packet identifier 0"));
    }
    let props = props::read(&mut r, &props::ACK)?.into_ack();
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = r.u8("reason code")?;
        if !valid(code) {
            return Err(DecodeError::ProtocolError("invalid reason code"));
        }
        reasons.push(code);
    }
    if reasons.is_empty() {
        return Err(DecodeError::ProtocolError(
            "acknowledgement without reason codes",
        ));
    }
    Ok((id, reasons, props))
}

pub(crate) fn suback_v5(body: Bytes) -> Result<SubAck, DecodeError> {
    let (packet_id, reasons, properties) = reasons_ack(body, reason::valid_suback)?;
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}

pub(crate) fn unsuback_v5(body: Bytes) -> Result<UnsubAck, DecodeError> {
    let (packet_id, reasons, properties) = reasons_ack(body, reason::valid_unsuback)?;
    Ok(UnsubAck {
        packet_id,
        reasons,
        properties,
    })
}
