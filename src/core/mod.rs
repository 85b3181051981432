//! The protocol-neutral routing core: vhosts, exchanges, bindings, queues and consumers.
//!
//! Listeners translate their protocol into calls on [`Vhost`] and receive deliveries as
//! [`ConsumerEvent`]s. Nothing here knows AMQP or MQTT.

pub mod definitions;
pub mod error;
pub mod exchange;
pub mod queue;
pub mod topic;
pub mod vhost;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::store::{Recovered, Store};

// The message model sits in the store, the lower layer, which persists it; the core's paths
// (`core::message`, `core::table`, `core::Message`, …) stay as they were.
pub use crate::store::{message, table};

pub use error::{CoreError, CoreResult};
pub use exchange::{Exchange, ExchangeKind, RouteTargets};
pub use message::{Message, Properties, ShortString, WireCache};
pub use queue::{
    ConnectionId, ConsumerEvent, ConsumerEvents, ConsumerId, ConsumerSpec, Delivery, EventSink,
    GetResult, Queue, QueueCounts, QueueMetrics, WindowGrants,
};
pub use table::{Table, Value};
pub use vhost::{ExchangeDeclare, QueueChurn, QueueDeclare, QueueDeclared, Routed, Vhost};

/// A hash map with a fast hasher that still resists collision flooding (keys such as
/// routing keys and queue names come from clients).
pub type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Bytes of message data held by all queues, against the memory high watermark.
#[derive(Debug)]
pub struct MemoryGauge {
    used: AtomicU64,
    limit: u64,
}

impl MemoryGauge {
    /// A gauge that reports pressure above `limit` bytes.
    pub fn new(limit: u64) -> MemoryGauge {
        MemoryGauge {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Counts `bytes` more.
    pub fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` fewer.
    pub fn sub(&self, bytes: u64) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes currently held.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit: above it publishers are held back.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether publishers should be held back until consumers drain the queues.
    pub fn over_limit(&self) -> bool {
        self.used() > self.limit
    }
}

/// The broker's shared state: every vhost, and id allocation.
#[derive(Debug)]
pub struct Core {
    vhosts: RwLock<HashMap<String, Arc<Vhost>>>,
    memory: Arc<MemoryGauge>,
    next_id: AtomicU64,
    store: Option<Arc<Store>>,
    users: crate::auth::Users,
}

impl Core {
    /// Creates the core with the default vhost `/` and RabbitMQ's default user, persisting
    /// durable state in `store`.
    pub fn new(memory_high_watermark: u64, store: Option<Arc<Store>>) -> Arc<Core> {
        Core::with_users(memory_high_watermark, store, crate::auth::Users::default())
    }

    /// Creates the core with these users.
    pub fn with_users(
        memory_high_watermark: u64,
        store: Option<Arc<Store>>,
        users: crate::auth::Users,
    ) -> Arc<Core> {
        let memory = Arc::new(MemoryGauge::new(memory_high_watermark));
        let mut vhosts = HashMap::new();
        vhosts.insert(
            "/".to_string(),
            Arc::new(Vhost::new("/".to_string(), memory.clone(), store.clone())),
        );
        Arc::new(Core {
            vhosts: RwLock::new(vhosts),
            memory,
            next_id: AtomicU64::new(1),
            store,
            users,
        })
    }

    /// Every vhost.
    pub fn vhosts(&self) -> Vec<Arc<Vhost>> {
        self.vhosts.read().values().cloned().collect()
    }

    /// Looks up a vhost.
    pub fn vhost(&self, name: &str) -> Option<Arc<Vhost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// The users and how they log in.
    pub fn users(&self) -> &crate::auth::Users {
        &self.users
    }

    /// The message store, if the broker persists anything.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// The memory gauge shared by all queues.
    pub fn memory(&self) -> &Arc<MemoryGauge> {
        &self.memory
    }

    /// A fresh connection identity.
    pub fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Brings back what an earlier run left in `store`: the durable topology, then the
    /// messages of each durable queue. Messages whose queue no longer exists are released.
    pub fn restore(&self, store: &Store, recovered: Recovered) {
        if let Some(bytes) = store.load_document(vhost::DEFINITIONS_DOCUMENT) {
            match serde_json::from_slice::<definitions::Definitions>(&bytes) {
                Ok(definitions) => {
                    for vhost in self.vhosts.read().values() {
                        vhost.restore_definitions(&definitions);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "definitions document unreadable; topology not restored")
                }
            }
        }
        for (key, messages) in recovered.queues {
            let queue = key.split_once('\u{0}').and_then(|(vhost, name)| {
                self.vhost(vhost)
                    .and_then(|v| v.queue(name, ConnectionId(0)).ok())
            });
            match queue {
                Some(queue) if queue.store_key() == Some(key.as_str()) => queue.restore(messages),
                _ => {
                    for message in messages {
                        store.record_ack(&key, message.msg_id);
                    }
                }
            }
        }
    }

    /// A fresh consumer identity.
    pub fn next_consumer_id(&self) -> ConsumerId {
        ConsumerId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}
