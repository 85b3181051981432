//! What the broker counts for its metrics: message counters per channel (AMQP) or per
//! connection (MQTT), and the registry of live connections that a scrape walks.
//!
//! The hot path pays one uncontended store per counted event: each [`Counter`] has exactly
//! one writer, the task that owns the channel or connection, so an increment is a relaxed
//! load and store of a cache line no other core writes, not a locked read-modify-write.
//! Scrapes read the counters of live connections and add the totals that closed ones
//! left behind ([`Registry::visit`]), as RabbitMQ's `rabbitmq_global_*` counters do.
//!
//! This layer knows protocol names only as metric labels; it imports nothing of the
//! broker.

mod kick;

pub use kick::{Kick, Kicked};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// The protocol (and version) a connection speaks, as the `protocol` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// AMQP 0-9-1.
    Amqp091,
    /// MQTT 3.1.
    Mqtt310,
    /// MQTT 3.1.1.
    Mqtt311,
    /// MQTT 5.0.
    Mqtt50,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; 4] = [
        Protocol::Amqp091,
        Protocol::Mqtt310,
        Protocol::Mqtt311,
        Protocol::Mqtt50,
    ];

    /// The label value RabbitMQ uses (`amqp091`, `mqtt311`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Amqp091 => "amqp091",
            Protocol::Mqtt310 => "mqtt310",
            Protocol::Mqtt311 => "mqtt311",
            Protocol::Mqtt50 => "mqtt50",
        }
    }

    /// Whether this is one of the MQTT versions.
    pub fn is_mqtt(self) -> bool {
        self != Protocol::Amqp091
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(index: u8) -> Protocol {
        Protocol::ALL
            .get(usize::from(index))
            .copied()
            .unwrap_or(Protocol::Amqp091)
    }
}

/// A counter with one writer (the task owning what it counts) and any number of readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning task calls this: a relaxed load and store, which would lose
    /// counts if two tasks raced, costs no locked instruction on the hot path.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub fn bump(&self) {
        self.add(1);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the message size histogram's buckets, in bytes, as RabbitMQ's
/// `rabbitmq_message_size_bytes` has them; a last bucket takes everything larger.
pub const MESSAGE_SIZE_BUCKETS: [u64; 8] = [
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
];

/// The index of the size bucket a body of `len` bytes falls in.
#[inline]
fn size_bucket(len: u64) -> usize {
    MESSAGE_SIZE_BUCKETS
        .iter()
        .position(|&bound| len <= bound)
        .unwrap_or(MESSAGE_SIZE_BUCKETS.len())
}

/// Declares the per-event message counters once, for the live counters and for their
/// totals, so both always have the same fields.
macro_rules! message_counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The message counters of one channel (AMQP) or connection (MQTT). Messages
        /// received are counted by size only: their number is the histogram's count, and
        /// routed messages are those received minus the unroutable, so a publish costs two
        /// increments (three with confirms).
        ///
        /// Aligned to a cache line: counters of different connections, written on different
        /// cores, must not share one (measured: 10% of AMQP 4p/4c throughput lost to that).
        #[derive(Debug, Default)]
        #[repr(align(64))]
        pub struct MessageCounters {
            /// Messages received, by [`MESSAGE_SIZE_BUCKETS`].
            received_by_size: [Counter; MESSAGE_SIZE_BUCKETS.len() + 1],
            /// Body bytes received.
            received_bytes: Counter,
            $($(#[$doc])* pub $name: Counter,)*
        }

        /// Totals of [`MessageCounters`] over any number of channels and connections.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct MessageTotals {
            /// Messages received, by [`MESSAGE_SIZE_BUCKETS`].
            pub received_by_size: [u64; MESSAGE_SIZE_BUCKETS.len() + 1],
            /// Body bytes received.
            pub received_bytes: u64,
            $($(#[$doc])* pub $name: u64,)*
        }

        impl MessageCounters {
            /// The counts now.
            pub fn totals(&self) -> MessageTotals {
                let mut received_by_size = [0; MESSAGE_SIZE_BUCKETS.len() + 1];
                for (total, counter) in received_by_size.iter_mut().zip(&self.received_by_size) {
                    *total = counter.get();
                }
                MessageTotals {
                    received_by_size,
                    received_bytes: self.received_bytes.get(),
                    $($name: self.$name.get(),)*
                }
            }
        }

        impl MessageTotals {
            /// Adds `other` to these totals.
            pub fn add(&mut self, other: &MessageTotals) {
                for (total, more) in self.received_by_size.iter_mut().zip(&other.received_by_size) {
                    *total = total.wrapping_add(*more);
                }
                self.received_bytes = self.received_bytes.wrapping_add(other.received_bytes);
                $(self.$name = self.$name.wrapping_add(other.$name);)*
            }
        }
    };
}

message_counters! {
    /// Messages received on a channel in confirm mode (AMQP) or at QoS 1 or 2 (MQTT).
    received_confirm,
    /// Of `received_confirm`, those at MQTT QoS 2.
    received_qos2,
    /// Publisher confirms (AMQP basic.ack to the publisher, MQTT PUBACK/PUBREC).
    confirmed,
    /// Unroutable messages dropped.
    unroutable_dropped,
    /// Unroutable mandatory messages returned (basic.return).
    unroutable_returned,
    /// Deliveries to consumers that need no acknowledgement (AMQP no-ack, MQTT QoS 0).
    delivered_consume_auto_ack,
    /// Deliveries to consumers that acknowledge (AMQP manual ack, MQTT QoS 1 and 2).
    delivered_consume_manual_ack,
    /// Of `delivered_consume_manual_ack`, those at MQTT QoS 2.
    delivered_qos2,
    /// basic.get answered with a message, no-ack.
    delivered_get_auto_ack,
    /// basic.get answered with a message to acknowledge.
    delivered_get_manual_ack,
    /// basic.get that found the queue empty.
    get_empty,
    /// Deliveries of messages delivered before.
    redelivered,
    /// Deliveries acknowledged by consumers.
    acknowledged,
    /// Of `acknowledged`, MQTT QoS 2 deliveries (PUBREC).
    acknowledged_qos2,
    /// Deliveries rejected, nacked or recovered (AMQP), which no longer await an ack.
    rejected,
}

impl MessageCounters {
    /// Counts a message received from a publisher, by its body size.
    #[inline]
    pub fn received(&self, body_len: usize) {
        let len = body_len as u64;
        if let Some(counter) = self.received_by_size.get(size_bucket(len)) {
            counter.bump();
        }
        self.received_bytes.add(len);
    }
}

impl MessageTotals {
    /// Messages received from publishers.
    pub fn received(&self) -> u64 {
        self.received_by_size
            .iter()
            .fold(0u64, |sum, n| sum.wrapping_add(*n))
    }

    /// Messages routed to at least one queue.
    pub fn routed(&self) -> u64 {
        self.received()
            .saturating_sub(self.unroutable_dropped)
            .saturating_sub(self.unroutable_returned)
    }

    /// Deliveries still awaiting acknowledgement (AMQP channels).
    pub fn unacknowledged(&self) -> u64 {
        self.delivered_consume_manual_ack
            .wrapping_add(self.delivered_get_manual_ack)
            .saturating_sub(self.acknowledged)
            .saturating_sub(self.rejected)
    }

    /// Publishes still awaiting their confirm.
    pub fn unconfirmed(&self) -> u64 {
        self.received_confirm.saturating_sub(self.confirmed)
    }

    /// Messages delivered to consumers and to basic.get.
    pub fn delivered(&self) -> u64 {
        self.delivered_consume_auto_ack
            .wrapping_add(self.delivered_consume_manual_ack)
            .wrapping_add(self.delivered_get_auto_ack)
            .wrapping_add(self.delivered_get_manual_ack)
    }
}

/// One AMQP channel's counters and state, as the scrape sees it.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// The channel number.
    pub number: u16,
    /// Its message counters, allocated on first use (idle channels do not carry them).
    messages: OnceLock<Box<MessageCounters>>,
    /// Consumers on the channel.
    pub consumers: AtomicU32,
    /// The prefetch count set by basic.qos.
    pub prefetch: AtomicU32,
    /// Whether the channel has published.
    pub publisher: AtomicBool,
}

impl ChannelStats {
    /// The channel's message counters, for its connection's task to count in.
    #[inline]
    pub fn messages(&self) -> &MessageCounters {
        self.messages.get_or_init(Box::default)
    }

    /// What [`ChannelStats::messages`] counted (zero when nothing was).
    pub fn message_totals(&self) -> MessageTotals {
        self.messages
            .get()
            .map(|counters| counters.totals())
            .unwrap_or_default()
    }
}

/// Who a connection is once its handshake is done.
#[derive(Debug, Clone, Default)]
pub struct ConnectionIdentity {
    /// The authenticated user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// The core's id of the connection (what its consumers name as their owner).
    pub connection: u64,
    /// The client's own name: the MQTT client id, or the AMQP `connection_name` client
    /// property (empty when it sent none).
    pub client: String,
}

/// One connection as the scrape sees it.
#[derive(Debug)]
pub struct ConnectionStats {
    /// Its registry key.
    pub id: u64,
    protocol: AtomicU8,
    /// The transport label: `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// The client's address.
    pub peer: SocketAddr,
    /// The broker's address of the connection.
    pub local: Option<SocketAddr>,
    /// Bytes read from the client.
    pub bytes_in: Counter,
    /// Bytes written to the client.
    pub bytes_out: Counter,
    /// Socket reads that returned data.
    pub reads: Counter,
    /// Socket writes.
    pub writes: Counter,
    /// The message counters of a protocol without channels (MQTT); allocated on first use,
    /// so idle connections do not carry them.
    messages: OnceLock<Box<MessageCounters>>,
    /// Consumers of a protocol without channels (MQTT: subscriptions).
    pub consumers: AtomicU32,
    /// Whether a protocol without channels has published.
    pub publisher: AtomicBool,
    /// MQTT: whether the session outlives the connection.
    pub persistent_session: AtomicBool,
    /// MQTT: the session's subscriptions.
    pub subscriptions: AtomicU32,
    identity: Mutex<Option<ConnectionIdentity>>,
    channels: Mutex<Vec<Arc<ChannelStats>>>,
    /// Ends the connection from outside (management API, vhost deletion, MQTT take-over).
    pub kick: Kick,
}

impl ConnectionStats {
    /// The protocol the connection speaks.
    pub fn protocol(&self) -> Protocol {
        Protocol::from_index(self.protocol.load(Ordering::Relaxed))
    }

    /// RabbitMQ's connection name: `peer -> local`.
    pub fn name(&self) -> String {
        match self.local {
            Some(local) => format!("{} -> {local}", self.peer),
            None => self.peer.to_string(),
        }
    }

    /// The message counters of a protocol without channels (MQTT), for its task to count in.
    #[inline]
    pub fn messages(&self) -> &MessageCounters {
        self.messages.get_or_init(Box::default)
    }

    /// What [`ConnectionStats::messages`] counted (zero when nothing was).
    pub fn message_totals(&self) -> MessageTotals {
        self.messages
            .get()
            .map(|counters| counters.totals())
            .unwrap_or_default()
    }

    /// Who the connection is, once its handshake is done.
    pub fn identity(&self) -> Option<ConnectionIdentity> {
        self.identity.lock().clone()
    }

    /// Records who the connection is (after authentication).
    pub fn set_identity(&self, identity: ConnectionIdentity) {
        *self.identity.lock() = Some(identity);
    }

    /// The channels open now.
    pub fn channels(&self) -> Vec<Arc<ChannelStats>> {
        self.channels.lock().clone()
    }

    /// Channels open now.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }
}

/// Counts per protocol that live outside connections.
#[derive(Debug, Default)]
struct ProtocolCounts {
    auth_succeeded: AtomicU64,
    auth_failed: AtomicU64,
    flow_pauses: AtomicU64,
}

#[derive(Debug, Default)]
struct RegistryState {
    connections: HashMap<u64, Arc<ConnectionStats>, ahash::RandomState>,
    /// What closed channels and connections counted, per protocol.
    retired: [MessageTotals; Protocol::ALL.len()],
}

/// Every live connection, the totals closed ones left, and the churn counters.
#[derive(Debug, Default)]
pub struct Registry {
    state: Mutex<RegistryState>,
    next_id: AtomicU64,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    channels_opened: AtomicU64,
    channels_closed: AtomicU64,
    protocols: [ProtocolCounts; Protocol::ALL.len()],
    /// MQTT will messages published.
    pub mqtt_wills_published: AtomicU64,
}

/// Churn counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Churn {
    /// Connections opened.
    pub connections_opened: u64,
    /// Connections closed.
    pub connections_closed: u64,
    /// Channels opened.
    pub channels_opened: u64,
    /// Channels closed.
    pub channels_closed: u64,
}

/// Authentication attempts and flow pauses of one protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtocolEvents {
    /// Successful authentications.
    pub auth_succeeded: u64,
    /// Failed authentications.
    pub auth_failed: u64,
    /// Times a publisher was paused for a congested queue.
    pub flow_pauses: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Registers a new connection; it is counted until the returned handle drops.
    pub fn open_connection(
        self: &Arc<Self>,
        protocol: Protocol,
        transport: &'static str,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ConnectionStats {
            id,
            protocol: AtomicU8::new(protocol.index() as u8),
            transport,
            peer,
            local,
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            reads: Counter::default(),
            writes: Counter::default(),
            messages: OnceLock::new(),
            consumers: AtomicU32::new(0),
            publisher: AtomicBool::new(false),
            persistent_session: AtomicBool::new(false),
            subscriptions: AtomicU32::new(0),
            identity: Mutex::new(None),
            channels: Mutex::new(Vec::new()),
            kick: Kick::default(),
        });
        self.state.lock().connections.insert(id, stats.clone());
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Registration {
            registry: self.clone(),
            stats,
        }
    }

    /// Churn counters now.
    pub fn churn(&self) -> Churn {
        Churn {
            connections_opened: self.connections_opened.load(Ordering::Relaxed),
            connections_closed: self.connections_closed.load(Ordering::Relaxed),
            channels_opened: self.channels_opened.load(Ordering::Relaxed),
            channels_closed: self.channels_closed.load(Ordering::Relaxed),
        }
    }

    /// Authentication and flow events of `protocol`.
    pub fn protocol_events(&self, protocol: Protocol) -> ProtocolEvents {
        let counts = &self.protocols[protocol.index()];
        ProtocolEvents {
            auth_succeeded: counts.auth_succeeded.load(Ordering::Relaxed),
            auth_failed: counts.auth_failed.load(Ordering::Relaxed),
            flow_pauses: counts.flow_pauses.load(Ordering::Relaxed),
        }
    }

    /// Counts an authentication attempt.
    pub fn auth_attempt(&self, protocol: Protocol, succeeded: bool) {
        let counts = &self.protocols[protocol.index()];
        let counter = if succeeded {
            &counts.auth_succeeded
        } else {
            &counts.auth_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a publisher paused by flow control.
    pub fn flow_paused(&self, protocol: Protocol) {
        self.protocols[protocol.index()]
            .flow_pauses
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Calls `visit` with the totals closed connections and channels left (per protocol,
    /// in [`Protocol::ALL`] order) and every live connection, under one lock, so a
    /// connection closing meanwhile is counted exactly once.
    pub fn visit<R>(
        &self,
        visit: impl FnOnce(
            &[MessageTotals; Protocol::ALL.len()],
            &mut dyn Iterator<Item = &Arc<ConnectionStats>>,
        ) -> R,
    ) -> R {
        let state = self.state.lock();
        let mut connections = state.connections.values();
        visit(&state.retired, &mut connections)
    }

    /// Message totals since start per protocol, in [`Protocol::ALL`] order: closed
    /// connections' and the live ones' (their channels included).
    pub fn message_totals_by_protocol(&self) -> [MessageTotals; Protocol::ALL.len()] {
        self.visit(|retired, connections| {
            let mut totals = *retired;
            for connection in connections {
                let total = &mut totals[connection.protocol().index()];
                total.add(&connection.message_totals());
                for channel in connection.channels() {
                    total.add(&channel.message_totals());
                }
            }
            totals
        })
    }

    /// Live connections now (a copy of the list, for listings).
    pub fn connections(&self) -> Vec<Arc<ConnectionStats>> {
        self.state.lock().connections.values().cloned().collect()
    }

    /// Closes the connection with RabbitMQ's name `name` (see [`ConnectionStats::name`]);
    /// false when there is none.
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        let found = self
            .connections()
            .into_iter()
            .filter(|connection| connection.name() == name)
            .collect::<Vec<_>>();
        for connection in &found {
            connection.kick.kick_because(reason);
        }
        !found.is_empty()
    }

    /// Closes every connection logged in to `vhost`.
    pub fn close_vhost_connections(&self, vhost: &str, reason: &str) {
        for connection in self.connections() {
            if connection
                .identity()
                .is_some_and(|identity| identity.vhost == vhost)
            {
                connection.kick.kick_because(reason);
            }
        }
    }

    fn retire_channel(state: &mut RegistryState, protocol: Protocol, channel: &ChannelStats) {
        state.retired[protocol.index()].add(&channel.message_totals());
    }
}

/// A connection's place in the registry; unregisters it (keeping its counts) when dropped.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    stats: Arc<ConnectionStats>,
}

impl Registration {
    /// The connection's counters.
    pub fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    /// The registry, for counts that live outside the connection.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The protocol turned out to be another version (MQTT learns it from CONNECT). Counts
    /// so far move with it: the connection has counted no messages before its handshake.
    pub fn set_protocol(&self, protocol: Protocol) {
        self.stats
            .protocol
            .store(protocol.index() as u8, Ordering::Relaxed);
    }

    /// Registers a channel opened on this connection.
    pub fn open_channel(&self, number: u16) -> Arc<ChannelStats> {
        let channel = Arc::new(ChannelStats {
            number,
            ..ChannelStats::default()
        });
        self.stats.channels.lock().push(channel.clone());
        self.registry
            .channels_opened
            .fetch_add(1, Ordering::Relaxed);
        channel
    }

    /// Unregisters a closed channel, keeping its counts in the protocol's totals.
    pub fn close_channel(&self, channel: &Arc<ChannelStats>) {
        let mut state = self.registry.state.lock();
        let mut channels = self.stats.channels.lock();
        let before = channels.len();
        channels.retain(|open| !Arc::ptr_eq(open, channel));
        if channels.len() < before {
            Registry::retire_channel(&mut state, self.stats.protocol(), channel);
            self.registry
                .channels_closed
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let protocol = self.stats.protocol();
        let mut state = self.registry.state.lock();
        state.connections.remove(&self.stats.id);
        let channels = std::mem::take(&mut *self.stats.channels.lock());
        for channel in &channels {
            Registry::retire_channel(&mut state, protocol, channel);
        }
        state.retired[protocol.index()].add(&self.stats.message_totals());
        drop(state);
        self.registry
            .channels_closed
            .fetch_add(channels.len() as u64, Ordering::Relaxed);
        self.registry
            .connections_closed
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    #[test]
    fn closed_channels_and_connections_keep_their_counts() {
        let registry = Registry::new();
        let connection = registry.open_connection(Protocol::Amqp091, "tcp", peer(), None);
        let channel = connection.open_channel(1);
        channel.messages().received(10);
        channel.messages().received(5_000);
        channel.messages().unroutable_dropped.bump();
        let live = registry.visit(|retired, connections| {
            let mut totals = retired[0];
            for connection in connections {
                for channel in connection.channels() {
                    totals.add(&channel.message_totals());
                }
            }
            totals
        });
        assert_eq!(live.received(), 2);
        assert_eq!(live.routed(), 1);
        assert_eq!(live.received_by_size[0], 1);
        assert_eq!(live.received_by_size[2], 1);
        connection.close_channel(&channel);
        connection.close_channel(&channel);
        drop(connection);
        let retired = registry.visit(|retired, connections| {
            assert_eq!(connections.count(), 0);
            retired[0]
        });
        assert_eq!(retired, live);
        let churn = registry.churn();
        assert_eq!((churn.connections_opened, churn.connections_closed), (1, 1));
        assert_eq!((churn.channels_opened, churn.channels_closed), (1, 1));
    }

    #[test]
    fn size_buckets_are_inclusive_upper_bounds() {
        assert_eq!(size_bucket(0), 0);
        assert_eq!(size_bucket(100), 0);
        assert_eq!(size_bucket(101), 1);
        assert_eq!(size_bucket(100_000_000), 7);
        assert_eq!(size_bucket(100_000_001), 8);
    }
}
