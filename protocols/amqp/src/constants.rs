//! Protocol constants: the protocol header, frame types, class ids and reply codes
//! (AMQP 0-9-1 §4.2, values as in RabbitMQ's `amqp-rabbitmq-0.9.1.json`).

/// The 8-byte protocol header a client sends first (AMQP §4.2.2).
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// Frame type of a method frame.
pub const FRAME_METHOD: u8 = 1;
/// Frame type of a content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Frame type of a content body frame.
pub const FRAME_BODY: u8 = 3;
/// Frame type of a heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Smallest frame_max a peer may negotiate (AMQP 0-9-1 `frame-min-size`, RabbitMQ's
/// `?FRAME_MIN_SIZE`). The reference JSON lists 8192 here; the spec and RabbitMQ's broker
/// use 4096, which is what clients expect to be allowed.
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Bytes a frame adds around its payload: 7-byte header (type, channel, size) + frame end.
pub const FRAME_OVERHEAD: usize = 8;
/// Size of the frame header before the payload: type (1), channel (2), size (4).
pub const FRAME_HEADER_SIZE: usize = 7;

/// Class id of `connection`.
pub const CLASS_CONNECTION: u16 = 10;
/// Class id of `channel`.
pub const CLASS_CHANNEL: u16 = 20;
/// Class id of `access` (deprecated; RabbitMQ still answers `access.request`).
pub const CLASS_ACCESS: u16 = 30;
/// Class id of `exchange`.
pub const CLASS_EXCHANGE: u16 = 40;
/// Class id of `queue`.
pub const CLASS_QUEUE: u16 = 50;
/// Class id of `basic`, the only content class.
pub const CLASS_BASIC: u16 = 60;
/// Class id of `confirm` (RabbitMQ extension).
pub const CLASS_CONFIRM: u16 = 85;
/// Class id of `tx`.
pub const CLASS_TX: u16 = 90;

/// 200: the method completed successfully (used in a normal `connection.close`).
pub const REPLY_SUCCESS: u16 = 200;
/// 311 (soft): the message was too large for the server to accept.
pub const CONTENT_TOO_LARGE: u16 = 311;
/// 312 (soft): a mandatory message could not be routed (`basic.return`).
pub const NO_ROUTE: u16 = 312;
/// 313 (soft): an immediate message had no consumer to deliver to.
pub const NO_CONSUMERS: u16 = 313;
/// 320 (hard): an operator forced the connection closed.
pub const CONNECTION_FORCED: u16 = 320;
/// 402 (hard): the client asked for an invalid virtual host path.
pub const INVALID_PATH: u16 = 402;
/// 403 (soft): access to the resource was refused.
pub const ACCESS_REFUSED: u16 = 403;
/// 404 (soft): the entity does not exist.
pub const NOT_FOUND: u16 = 404;
/// 405 (soft): the resource is locked by another connection (exclusive queue).
pub const RESOURCE_LOCKED: u16 = 405;
/// 406 (soft): a precondition failed (e.g. an inequivalent redeclare).
pub const PRECONDITION_FAILED: u16 = 406;
/// 501 (hard): a malformed frame.
pub const FRAME_ERROR: u16 = 501;
/// 502 (hard): a frame with illegal field values.
pub const SYNTAX_ERROR: u16 = 502;
/// 503 (hard): an invalid sequence of frames or a method not allowed now.
pub const COMMAND_INVALID: u16 = 503;
/// 504 (hard): a channel that is not open, or already open.
pub const CHANNEL_ERROR: u16 = 504;
/// 505 (hard): a frame that was not expected in the current state.
pub const UNEXPECTED_FRAME: u16 = 505;
/// 506 (hard): the server ran out of a resource.
pub const RESOURCE_ERROR: u16 = 506;
/// 530 (hard): the operation is not allowed (e.g. unknown vhost).
pub const NOT_ALLOWED: u16 = 530;
/// 540 (hard): the functionality is not implemented by the server.
pub const NOT_IMPLEMENTED: u16 = 540;
/// 541 (hard): an internal server error.
pub const INTERNAL_ERROR: u16 = 541;

/// The constant name of a reply code as RabbitMQ prints it in reply texts
/// (`"NOT_FOUND"`, `"PRECONDITION_FAILED"`, …); `"UNKNOWN"` for any other value.
pub fn reply_text(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "REPLY_SUCCESS",
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "UNKNOWN",
    }
}

/// Whether a reply code is a hard (connection) error per the spec's classification;
/// soft errors close only the channel.
pub fn is_hard_error(code: u16) -> bool {
    matches!(
        code,
        CONNECTION_FORCED
            | INVALID_PATH
            | FRAME_ERROR
            | SYNTAX_ERROR
            | COMMAND_INVALID
            | CHANNEL_ERROR
            | UNEXPECTED_FRAME
            | RESOURCE_ERROR
            | NOT_ALLOWED
            | NOT_IMPLEMENTED
            | INTERNAL_ERROR
    )
}
