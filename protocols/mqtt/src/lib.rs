//! warren-mqtt: a sans-IO MQTT 3.1.1 / 5.0 framing crate over `mqttbytes`, with one packet
//! model the broker uses for both protocol versions.
//!
//! The crate never touches sockets, clocks or tokio. A connection owns one [`Codec`]:
//! [`Codec::decode`]`(&mut BytesMut) -> Result<Option<Packet>, DecodeError>` returns
//! `Ok(None)` until a whole packet is buffered, rejects a packet larger than the limit as
//! soon as its fixed header is read (never buffering it), checks every rule the MQTT specs
//! make normative for the bytes of one packet (reserved flags, UTF-8, property sets, will
//! flags, packet ids …) and hands PUBLISH payloads out as zero-copy `Bytes` slices.
//! [`Codec::encode`] appends one packet to a `&mut BytesMut` in the connection's version and
//! refuses packets over the client's Maximum Packet Size.
//!
//! `mqttbytes` 0.6 does the work where it is right (v3.1.1 PUBLISH/SUBSCRIBE/UNSUBSCRIBE/ack
//! bodies on decode, most non-PUBLISH encoders); where it deviates from the specs this crate
//! pre-validates, wraps or hand-writes the packet. Every deviation has a unit test in
//! `src/tests/deviations.rs`; the list is in the doc of the private `bridge` module.
//!
//! Modules:
//! - [`packet`]: [`Packet`] and its structs, the one model for both versions.
//! - [`codec`]: [`Codec`], framing, limits and the version switch.
//! - [`topic`]: topic name / filter validation, matching (`+`, `#`, `$`), shared subscriptions.
//! - [`error`]: [`DecodeError`] (with the v5 reason code each maps to) and [`EncodeError`].
//! - [`reason`]: MQTT 5 reason codes and the 3.1.1 CONNACK return codes.
#![warn(missing_docs)]

mod bridge;
pub mod codec;
pub mod error;
pub mod packet;
mod props;
mod read;
pub mod reason;
pub mod topic;
mod wire;
mod write;

#[cfg(test)]
mod tests;

pub use codec::Codec;
pub use error::{DecodeError, EncodeError};
pub use packet::*;
