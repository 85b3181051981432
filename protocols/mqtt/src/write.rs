//! Hand-written encoders: PUBLISH (both versions; the hot path), CONNECT (both versions;
//! mqttbytes cannot carry a binary password or an empty user name), the v5
//! PUBACK/PUBREC/PUBREL/PUBCOMP/UNSUBACK (any valid reason code) and AUTH (missing from
//! mqttbytes).
//!
//! Each computes the remaining length first (checking every field), then writes, so nothing
//! is appended on error.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;
use crate::packet::{AckProperties, Auth, Connect, ProtocolVersion, Publish, QoS, UnsubAck};
use crate::props::{self, Visit, WillProps};
use crate::wire::{field_len, packet_len, put_binary, put_varint, varint_len};

fn header(out: &mut BytesMut, byte1: u8, remaining: usize) {
    out.put_u8(byte1);
    put_varint(out, remaining);
}

/// PUBLISH. Checks `max` (the peer's Maximum Packet Size) before writing anything.
pub(crate) fn publish(
    version: ProtocolVersion,
    p: &Publish,
    max: Option<usize>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let v5 = version == ProtocolVersion::V5;
    let plen = if v5 {
        props::props_len(&p.properties)?
    } else {
        0
    };
    let mut remaining = field_len(p.topic.len())? + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        if p.packet_id == 0 {
            return Err(EncodeError::PacketIdZero);
        }
        remaining += 2;
    }
    if v5 {
        remaining += varint_len(plen) + plen;
    }
    let total = packet_len(remaining)?;
    if let Some(max) = max {
        if total > max {
            return Err(EncodeError::PacketTooLarge { size: total, max });
        }
    }
    out.reserve(total);
    // DUP is always 0 for QoS 0 [MQTT-3.3.1-2].
    let dup = p.dup && p.qos != QoS::AtMostOnce;
    header(
        out,
        0x30 | (u8::from(dup) << 3) | (p.qos.as_u8() << 1) | u8::from(p.retain),
        remaining,
    );
    put_binary(out, p.topic.as_bytes());
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    if v5 {
        props::write_block(&p.properties, plen, out);
    }
    out.put_slice(&p.payload);
    Ok(())
}

/// CONNECT in `c.protocol`'s version.
pub(crate) fn connect(c: &Connect, out: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol == ProtocolVersion::V5;
    if !v5 && c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::InvalidField(
            "password without user name in MQTT 3.1.1",
        ));
    }
    // protocol name, level, flags, keep alive
    let mut remaining = 6 + 1 + 1 + 2;
    let plen = if v5 {
        let n = props::props_len(&c.properties)?;
        remaining += varint_len(n) + n;
        n
    } else {
        0
    };
    remaining += field_len(c.client_id.len())?;
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    let mut will_plen = 0;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos.as_u8() << 3) | (u8::from(w.retain) << 5);
        if v5 {
            will_plen = props::props_len(&WillProps {
                delay: w.delay_interval,
                props: &w.properties,
            })?;
            remaining += varint_len(will_plen) + will_plen;
        }
        remaining += field_len(w.topic.len())? + field_len(w.payload.len())?;
    }
    if let Some(u) = &c.username {
        flags |= 0x80;
        remaining += field_len(u.len())?;
    }
    if let Some(p) = &c.password {
        flags |= 0x40;
        remaining += field_len(p.len())?;
    }
    let total = packet_len(remaining)?;
    out.reserve(total);
    header(out, 0x10, remaining);
    put_binary(out, b"MQTT");
    out.put_u8(c.protocol.level());
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        props::write_block(&c.properties, plen, out);
    }
    put_binary(out, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        if v5 {
            let wp = WillProps {
                delay: w.delay_interval,
                props: &w.properties,
            };
            props::write_block(&wp, will_plen, out);
        }
        put_binary(out, w.topic.as_bytes());
        put_binary(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_binary(out, u.as_bytes());
    }
    if let Some(p) = &c.password {
        put_binary(out, p);
    }
    Ok(())
}

/// v5 PUBACK/PUBREC/PUBREL/PUBCOMP: the short forms when there is nothing to say
/// (MQTT 5.0 §3.4.2.1: reason and properties may be omitted).
#[allow(clippy::too_many_arguments)]
pub(crate) fn ack_v5(
    byte1: u8,
    name: &'static str,
    valid: fn(u8) -> bool,
    packet_id: u16,
    reason: u8,
    properties: &AckProperties,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::PacketIdZero);
    }
    if !valid(reason) {
        return Err(EncodeError::InvalidReasonCode {
            code: reason,
            packet: name,
        });
    }
    let plen = props::props_len(properties)?;
    let remaining = 2 + match (reason, plen) {
        (0, 0) => 0,
        (_, 0) => 1,
        _ => 1 + varint_len(plen) + plen,
    };
    packet_len(remaining)?;
    header(out, byte1, remaining);
    out.put_u16(packet_id);
    if remaining > 2 {
        out.put_u8(reason);
    }
    if plen > 0 {
        props::write_block(properties, plen, out);
    }
    Ok(())
}

/// v5 UNSUBACK.
pub(crate) fn unsuback_v5(u: &UnsubAck, out: &mut BytesMut) -> Result<(), EncodeError> {
    if u.packet_id == 0 {
        return Err(EncodeError::PacketIdZero);
    }
    if u.reasons.is_empty() {
        return Err(EncodeError::InvalidField("UNSUBACK without reason codes"));
    }
    if let Some(&code) = u
        .reasons
        .iter()
        .find(|&&c| !crate::reason::valid_unsuback(c))
    {
        return Err(EncodeError::InvalidReasonCode {
            code,
            packet: "UNSUBACK",
        });
    }
    let plen = props::props_len(&u.properties)?;
    let remaining = 2 + varint_len(plen) + plen + u.reasons.len();
    packet_len(remaining)?;
    header(out, 0xB0, remaining);
    out.put_u16(u.packet_id);
    props::write_block(&u.properties, plen, out);
    out.put_slice(&u.reasons);
    Ok(())
}

/// AUTH (v5 only).
pub(crate) fn auth(a: &Auth, out: &mut BytesMut) -> Result<(), EncodeError> {
    if !crate::reason::valid_auth(a.reason) {
        return Err(EncodeError::InvalidReasonCode {
            code: a.reason,
            packet: "AUTH",
        });
    }
    let plen = props::props_len(a)?;
    let remaining = if a.reason == 0 && plen == 0 {
        0
    } else {
        1 + varint_len(plen) + plen
    };
    packet_len(remaining)?;
    header(out, 0xF0, remaining);
    if remaining > 0 {
        out.put_u8(a.reason);
        props::write_block(a as &dyn Visit, plen, out);
    }
    Ok(())
}
