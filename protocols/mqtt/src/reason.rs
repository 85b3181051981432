//! MQTT 5 reason codes (MQTT 5.0 §2.4) and the MQTT 3.1.1 CONNACK return codes (§3.2.2.3).
//!
//! The packet model carries v5 reason codes everywhere ([`crate::ConnAck::reason`],
//! [`crate::SubAck::reasons`] …); for a 3.1.1 connection the encoder maps them with
//! [`connack_v4_from_v5`] (CONNACK) or to `0x80` (a failed SUBACK entry).

/// Success / normal disconnection / granted QoS 0.
pub const SUCCESS: u8 = 0x00;
/// Normal disconnection (DISCONNECT), the same value as [`SUCCESS`].
pub const NORMAL_DISCONNECTION: u8 = 0x00;
/// SUBACK: granted QoS 0, the same value as [`SUCCESS`].
pub const GRANTED_QOS_0: u8 = 0x00;
/// SUBACK: granted QoS 1.
pub const GRANTED_QOS_1: u8 = 0x01;
/// SUBACK: granted QoS 2.
pub const GRANTED_QOS_2: u8 = 0x02;
/// DISCONNECT from a client: close, but publish the will message.
pub const DISCONNECT_WITH_WILL: u8 = 0x04;
/// PUBACK/PUBREC: accepted, but nobody was subscribed.
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
/// UNSUBACK: the filter had no subscription.
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
/// AUTH: continue the authentication exchange.
pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
/// AUTH: the client starts a re-authentication.
pub const RE_AUTHENTICATE: u8 = 0x19;
/// Unspecified error.
pub const UNSPECIFIED_ERROR: u8 = 0x80;
/// The packet could not be parsed.
pub const MALFORMED_PACKET: u8 = 0x81;
/// The packet broke a protocol rule.
pub const PROTOCOL_ERROR: u8 = 0x82;
/// Valid packet the server does not accept.
pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
/// CONNACK: the protocol level is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
/// CONNACK: the client id is not accepted.
pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
/// CONNACK: bad user name or password.
pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
/// Not authorized.
pub const NOT_AUTHORIZED: u8 = 0x87;
/// CONNACK: the server is unavailable.
pub const SERVER_UNAVAILABLE: u8 = 0x88;
/// The server is busy.
pub const SERVER_BUSY: u8 = 0x89;
/// CONNACK: this client is banned.
pub const BANNED: u8 = 0x8A;
/// DISCONNECT: the server is shutting down.
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
/// CONNACK/DISCONNECT: the authentication method is not supported.
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
/// DISCONNECT: nothing arrived within 1.5 × keep alive.
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
/// DISCONNECT: another connection took this client id over.
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
/// SUBACK/UNSUBACK/DISCONNECT: the topic filter is not valid.
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
/// The topic name is not valid.
pub const TOPIC_NAME_INVALID: u8 = 0x90;
/// The packet identifier is already in use.
pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
/// PUBREL/PUBCOMP: the packet identifier is unknown.
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
/// DISCONNECT: more QoS > 0 publishes in flight than Receive Maximum allows.
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
/// DISCONNECT: topic alias 0 or above the announced maximum.
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
/// The packet exceeds the maximum packet size.
pub const PACKET_TOO_LARGE: u8 = 0x95;
/// DISCONNECT: the publish rate is too high.
pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
/// A quota was exceeded.
pub const QUOTA_EXCEEDED: u8 = 0x97;
/// DISCONNECT: an administrator closed the connection.
pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
/// The payload does not match the payload format indicator.
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
/// Retained messages are not supported.
pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
/// The QoS is not supported.
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
/// The client should temporarily use another server.
pub const USE_ANOTHER_SERVER: u8 = 0x9C;
/// The client should permanently use another server.
pub const SERVER_MOVED: u8 = 0x9D;
/// Shared subscriptions are not supported.
pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
/// The connection rate limit was exceeded.
pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
/// DISCONNECT: the maximum connection time was reached.
pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
/// Subscription identifiers are not supported.
pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
/// Wildcard subscriptions are not supported.
pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;

/// MQTT 3.1.1 CONNACK: connection accepted.
pub const CONNACK_V4_ACCEPTED: u8 = 0;
/// MQTT 3.1.1 CONNACK: unacceptable protocol version.
pub const CONNACK_V4_UNACCEPTABLE_PROTOCOL_VERSION: u8 = 1;
/// MQTT 3.1.1 CONNACK: identifier rejected.
pub const CONNACK_V4_IDENTIFIER_REJECTED: u8 = 2;
/// MQTT 3.1.1 CONNACK: server unavailable.
pub const CONNACK_V4_SERVER_UNAVAILABLE: u8 = 3;
/// MQTT 3.1.1 CONNACK: bad user name or password.
pub const CONNACK_V4_BAD_USER_NAME_OR_PASSWORD: u8 = 4;
/// MQTT 3.1.1 CONNACK: not authorized.
pub const CONNACK_V4_NOT_AUTHORIZED: u8 = 5;

/// Maps a v5 CONNACK reason code to the closest MQTT 3.1.1 return code.
///
/// - `0x00` → 0 accepted; `0x84` → 1; `0x85` → 2; `0x86` → 4; `0x87`, `0x8A` (banned),
///   `0x8C` (bad authentication method) → 5 not authorized.
/// - Every other failure (server busy/unavailable/moved, quota, malformed, protocol error …)
///   → 3 server unavailable, which 3.1.1 clients treat as "try again later".
/// - `1..=5` are passed through unchanged (they are not v5 CONNACK codes, so a caller that
///   already holds a 3.1.1 return code gets it back).
pub fn connack_v4_from_v5(reason: u8) -> u8 {
    match reason {
        SUCCESS => CONNACK_V4_ACCEPTED,
        1..=5 => reason,
        UNSUPPORTED_PROTOCOL_VERSION => CONNACK_V4_UNACCEPTABLE_PROTOCOL_VERSION,
        CLIENT_IDENTIFIER_NOT_VALID => CONNACK_V4_IDENTIFIER_REJECTED,
        BAD_USER_NAME_OR_PASSWORD => CONNACK_V4_BAD_USER_NAME_OR_PASSWORD,
        NOT_AUTHORIZED | BANNED | BAD_AUTHENTICATION_METHOD => CONNACK_V4_NOT_AUTHORIZED,
        _ => CONNACK_V4_SERVER_UNAVAILABLE,
    }
}

/// Maps a 3.1.1 CONNACK return code to the v5 reason code (used when a 3.1.1 CONNACK is
/// decoded into the shared model). Unknown codes map to [`UNSPECIFIED_ERROR`].
pub fn connack_v5_from_v4(code: u8) -> u8 {
    match code {
        CONNACK_V4_ACCEPTED => SUCCESS,
        CONNACK_V4_UNACCEPTABLE_PROTOCOL_VERSION => UNSUPPORTED_PROTOCOL_VERSION,
        CONNACK_V4_IDENTIFIER_REJECTED => CLIENT_IDENTIFIER_NOT_VALID,
        CONNACK_V4_SERVER_UNAVAILABLE => SERVER_UNAVAILABLE,
        CONNACK_V4_BAD_USER_NAME_OR_PASSWORD => BAD_USER_NAME_OR_PASSWORD,
        CONNACK_V4_NOT_AUTHORIZED => NOT_AUTHORIZED,
        _ => UNSPECIFIED_ERROR,
    }
}

/// Reason codes a PUBACK or PUBREC may carry (MQTT 5.0 §3.4.2.1, §3.5.2.1).
pub(crate) fn valid_puback(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    )
}

/// Reason codes a PUBREL or PUBCOMP may carry (MQTT 5.0 §3.6.2.1, §3.7.2.1).
pub(crate) fn valid_pubrel(code: u8) -> bool {
    matches!(code, 0x00 | 0x92)
}

/// Reason codes a SUBACK may carry (MQTT 5.0 §3.9.3).
pub(crate) fn valid_suback(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x01 | 0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
    )
}

/// Reason codes an UNSUBACK may carry (MQTT 5.0 §3.11.3).
pub(crate) fn valid_unsuback(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

/// Reason codes a CONNACK may carry (MQTT 5.0 §3.2.2.2).
pub(crate) fn valid_connack(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x80
            | 0x81
            | 0x82
            | 0x83
            | 0x84
            | 0x85
            | 0x86
            | 0x87
            | 0x88
            | 0x89
            | 0x8A
            | 0x8C
            | 0x90
            | 0x95
            | 0x97
            | 0x99
            | 0x9A
            | 0x9B
            | 0x9C
            | 0x9D
            | 0x9F
    )
}

/// Reason codes a DISCONNECT may carry (MQTT 5.0 §3.14.2.1).
pub(crate) fn valid_disconnect(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x04
            | 0x80
            | 0x81
            | 0x82
            | 0x83
            | 0x87
            | 0x89
            | 0x8B
            | 0x8D
            | 0x8E
            | 0x8F
            | 0x90
            | 0x93
            | 0x94
            | 0x95
            | 0x96
            | 0x97
            | 0x98
            | 0x99
            | 0x9A
            | 0x9B
            | 0x9C
            | 0x9D
            | 0x9E
            | 0x9F
            | 0xA0
            | 0xA1
            | 0xA2
    )
}

/// Reason codes an AUTH may carry (MQTT 5.0 §3.15.2.1).
pub(crate) fn valid_auth(code: u8) -> bool {
    matches!(code, 0x00 | 0x18 | 0x19)
}
