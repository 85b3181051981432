//! The message as the core routes it and the store keeps it: routing information, properties
//! and a shared body. It lives here, below the core, so that the store can encode and decode
//! messages without importing the core that uses it.

use bytes::Bytes;
pub use compact_str::CompactString as ShortString;

use super::table::Table;

/// Identifies one connection (of any protocol) for exclusivity and cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// The standard message properties (the fourteen AMQP basic properties; MQTT maps onto them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Properties {
    /// MIME content type.
    pub content_type: Option<String>,
    /// MIME content encoding.
    pub content_encoding: Option<String>,
    /// Application headers (also what headers exchanges match on).
    pub headers: Option<Table>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Priority 0–9.
    pub priority: Option<u8>,
    /// Correlation identifier.
    pub correlation_id: Option<String>,
    /// Address to reply to.
    pub reply_to: Option<String>,
    /// Per-message TTL in milliseconds, as a decimal string.
    pub expiration: Option<String>,
    /// Application message identifier.
    pub message_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// Message type name.
    pub kind: Option<String>,
    /// Creating user.
    pub user_id: Option<String>,
    /// Creating application.
    pub app_id: Option<String>,
    /// Deprecated cluster identifier.
    pub cluster_id: Option<String>,
}

/// The properties as a listener encoded them on the way in, kept so that a listener speaking
/// the same wire format can send them on without re-encoding. The core never reads it.
#[derive(Debug, Clone)]
pub struct WireCache {
    /// Which encoding `bytes` holds; chosen and checked by listeners.
    pub format: &'static str,
    /// The encoded properties.
    pub bytes: Bytes,
}

/// A published message. Shared (`Arc`) between every queue it is routed to; never copied.
#[derive(Debug, Clone)]
pub struct Message {
    /// The exchange it was published to. A [`ShortString`] keeps names up to 24 bytes inline:
    /// no allocation per message for the usual exchange names and routing keys.
    pub exchange: ShortString,
    /// The routing key it was published with.
    pub routing_key: ShortString,
    /// Its properties.
    pub properties: Properties,
    /// The payload.
    pub body: Bytes,
    /// The properties' original encoding, if the publishing listener supplied one.
    pub wire_cache: Option<WireCache>,
    /// The connection that published it, for "no local" subscriptions.
    pub origin: Option<ConnectionId>,
}

impl Message {
    /// Bytes this message accounts for in memory limits (payload plus a fixed overhead).
    pub fn memory_size(&self) -> u64 {
        const OVERHEAD: u64 = 128;
        self.body.len() as u64 + self.routing_key.len() as u64 + OVERHEAD
    }
}
