//! Decode errors and the AMQP reply code a server answers each with.
//!
//! Every error here is a connection-level (hard) error: the listener sends
//! `connection.close` with [`DecodeError::reply_code`] and then drops the socket, as
//! RabbitMQ does for malformed input. After an error the input buffer is in an
//! unspecified state (part of the bad frame may have been consumed), so the connection
//! must not keep decoding.

use crate::constants;

/// Why some input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The byte after a frame payload was not `0xCE` (AMQP §2.3.5).
    #[error("bad frame end octet 0x{0:02x}, expected 0xce")]
    BadFrameEnd(u8),
    /// The frame header declared a payload larger than the negotiated frame_max allows.
    /// `size` is the declared payload size, `max` the negotiated frame_max (which includes
    /// the 8 bytes of frame overhead).
    #[error("frame payload of {size} bytes exceeds frame_max {max}")]
    FrameTooLarge {
        /// Declared payload size.
        size: u32,
        /// Negotiated frame_max, overhead included.
        max: u32,
    },
    /// A frame type other than method (1), header (2), body (3) or heartbeat (8).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// A heartbeat frame with a non-empty payload (RabbitMQ: `unknown_frame`).
    #[error("heartbeat frame with a {0}-byte payload")]
    BadHeartbeat(u32),
    /// A method frame for a class/method pair the protocol does not define.
    #[error("unknown method {class_id}.{method_id}")]
    UnknownMethod {
        /// Class id read from the frame.
        class_id: u16,
        /// Method id read from the frame.
        method_id: u16,
    },
    /// The payload ended before the named field did.
    #[error("truncated input while reading {0}")]
    Truncated(&'static str),
    /// A short string (method argument, property or table key) was not valid UTF-8.
    #[error("short string is not valid UTF-8")]
    InvalidUtf8,
    /// A field-table or field-array value with an unknown type letter.
    #[error("unknown field value type 0x{0:02x}")]
    BadFieldType(u8),
    /// Field tables/arrays nested deeper than [`crate::table::MAX_DEPTH`].
    #[error("field tables nested too deeply")]
    TooDeep,
    /// A method or content-header payload longer than its fields. RabbitMQ's generated
    /// decoder matches method arguments exactly and answers extra bytes with a
    /// FRAME_ERROR, so this crate rejects them too.
    #[error("payload has bytes after its last field")]
    TrailingBytes,
}

impl DecodeError {
    /// The AMQP reply code a server closes the connection with, as RabbitMQ does.
    ///
    /// - 501 FRAME_ERROR for every framing or argument error (bad frame end, oversized
    ///   frame, unknown frame type, truncated or trailing arguments, bad field type,
    ///   bad UTF-8, nesting), like RabbitMQ's `frame_error`/`unknown_frame` paths.
    /// - 540 NOT_IMPLEMENTED for an unknown class/method pair. RabbitMQ itself crashes the
    ///   connection process on an unknown method id (no `connection.close` at all); a
    ///   close with NOT_IMPLEMENTED ("functionality not implemented in the server",
    ///   AMQP §1.2) gives the client the same outcome with a reason attached.
    /// - Never 505 UNEXPECTED_FRAME: frame-order checks (a header without a content
    ///   method, a heartbeat on a non-zero channel, a content class mismatch) belong to
    ///   the listener's state machine.
    pub fn reply_code(&self) -> u16 {
        match self {
            DecodeError::UnknownMethod { .. } => constants::NOT_IMPLEMENTED,
            DecodeError::BadFrameEnd(_)
            | DecodeError::FrameTooLarge { .. }
            | DecodeError::UnknownFrameType(_)
            | DecodeError::BadHeartbeat(_)
            | DecodeError::Truncated(_)
            | DecodeError::InvalidUtf8
            | DecodeError::BadFieldType(_)
            | DecodeError::TooDeep
            | DecodeError::TrailingBytes => constants::FRAME_ERROR,
        }
    }
}
