//! The protocol-neutral routing core: vhosts, exchanges, bindings, queues and consumers.
//!
//! Listeners translate their protocol into calls on [`Vhost`] and receive deliveries as
//! [`ConsumerEvent`]s. Nothing here knows AMQP or MQTT.

pub mod arguments;
pub mod dead_letter;
pub mod definitions;
pub mod error;
pub mod exchange;
mod import;
mod lanes;
pub mod policy;
pub mod queue;
mod timers;
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
pub use policy::{Policy, PolicyDefinition};
pub use queue::{
    ChannelCredit, ConnectionId, ConsumerEvent, ConsumerEvents, ConsumerId, ConsumerSpec, Delivery,
    EventSink, GetResult, Overflow, Queue, QueueCounts, QueueMetrics, WindowGrants,
};
pub use table::{Table, Value};
pub use vhost::{
    ExchangeDeclare, QueueChurn, QueueDeclare, QueueDeclared, Routed, Vhost, VhostMetadata,
};

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

/// The disk alarm: raised while the data directory's file system has less free space than
/// the limit (RabbitMQ's `disk_free_limit.absolute`). The broker's disk monitor feeds it.
#[derive(Debug)]
pub struct DiskAlarm {
    limit: AtomicU64,
    /// The last free space measured (`u64::MAX` until measured).
    free: AtomicU64,
    raised: std::sync::atomic::AtomicBool,
}

impl DiskAlarm {
    fn new() -> DiskAlarm {
        DiskAlarm {
            limit: AtomicU64::new(0),
            free: AtomicU64::new(u64::MAX),
            raised: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The free space below which the alarm is raised.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (RabbitMQ's `rabbitmqctl set_disk_free_limit`); the alarm follows at
    /// once from the last measurement.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
        self.measured(self.free.load(Ordering::Relaxed));
    }

    /// Records a measurement of the free space; logs when the alarm is raised or cleared.
    pub fn measured(&self, free: u64) {
        self.free.store(free, Ordering::Relaxed);
        let limit = self.limit();
        let low = free != u64::MAX && free < limit;
        if self.raised.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(free, limit, "disk alarm raised: free disk space is below disk_free_limit; publishers are blocked");
            } else {
                tracing::info!(free, limit, "disk alarm cleared");
            }
        }
    }

    /// Whether the alarm is raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }
}

/// The broker's shared state: every vhost, the users, and id allocation.
#[derive(Debug)]
pub struct Core {
    vhosts: RwLock<HashMap<String, Arc<Vhost>>>,
    memory: Arc<MemoryGauge>,
    disk: DiskAlarm,
    next_id: AtomicU64,
    store: Option<Arc<Store>>,
    users: Arc<crate::auth::Users>,
    /// Orders saves of the vhosts document.
    vhosts_save: parking_lot::Mutex<()>,
}

/// The store document listing the vhosts (with their metadata and policies).
const VHOSTS_DOCUMENT: &str = "vhosts.json";

/// One vhost in [`VHOSTS_DOCUMENT`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedVhost {
    name: String,
    #[serde(flatten)]
    metadata: VhostMetadata,
    #[serde(default)]
    policies: Vec<PolicyDefinition>,
}

impl Core {
    /// Creates the core with the default vhost `/` and RabbitMQ's default user, persisting
    /// durable state in `store`.
    pub fn new(memory_high_watermark: u64, store: Option<Arc<Store>>) -> Arc<Core> {
        Core::with_users(memory_high_watermark, store, crate::auth::Users::default())
    }

    /// Creates the core with these users and the default vhost `/`.
    pub fn with_users(
        memory_high_watermark: u64,
        store: Option<Arc<Store>>,
        users: crate::auth::Users,
    ) -> Arc<Core> {
        let users = Arc::new(users);
        // Without a readable vhosts document (a fresh or in-memory store) this cannot fail;
        // with an unreadable one, the vhosts are those of a fresh node.
        Core::open(
            memory_high_watermark,
            store.clone(),
            users.clone(),
            crate::auth::DEFAULT_VHOST,
        )
        .unwrap_or_else(|_| {
            let core = Core::empty(memory_high_watermark, store, users);
            core.insert_vhost(crate::auth::DEFAULT_VHOST, VhostMetadata::default());
            core
        })
    }

    /// Creates the core with these users and the vhosts saved in `store` by an earlier run,
    /// or, on a fresh node, the vhost `default_vhost`. Queues and messages come back with
    /// [`Core::restore`].
    pub fn open(
        memory_high_watermark: u64,
        store: Option<Arc<Store>>,
        users: Arc<crate::auth::Users>,
        default_vhost: &str,
    ) -> Result<Arc<Core>, String> {
        let core = Core::empty(memory_high_watermark, store, users);
        let saved = core
            .store
            .as_ref()
            .and_then(|store| store.load_document(VHOSTS_DOCUMENT))
            .map(|bytes| serde_json::from_slice::<Vec<SavedVhost>>(&bytes));
        match saved {
            Some(Ok(vhosts)) => {
                for saved in vhosts {
                    let vhost = core.insert_vhost(&saved.name, saved.metadata);
                    for definition in saved.policies {
                        match Policy::new(definition) {
                            Ok(policy) => vhost.put_policy(policy),
                            Err(error) => tracing::warn!(%error, "policy not restored"),
                        }
                    }
                }
            }
            Some(Err(error)) => {
                // Starting without the vhosts would drop their queues' messages at recovery
                // and overwrite the document at the next change: refuse instead.
                return Err(format!(
                    "the vhosts document {VHOSTS_DOCUMENT} in the data directory is unreadable: {error}"
                ));
            }
            None => {
                // A data directory from before vhosts were saved holds the default vhost.
                core.insert_vhost(default_vhost, VhostMetadata::default());
                core.save_vhosts();
            }
        }
        Ok(core)
    }

    fn empty(
        memory_high_watermark: u64,
        store: Option<Arc<Store>>,
        users: Arc<crate::auth::Users>,
    ) -> Arc<Core> {
        Arc::new(Core {
            vhosts: RwLock::new(HashMap::new()),
            memory: Arc::new(MemoryGauge::new(memory_high_watermark)),
            disk: DiskAlarm::new(),
            next_id: AtomicU64::new(1),
            store,
            users,
            vhosts_save: parking_lot::Mutex::new(()),
        })
    }

    fn insert_vhost(&self, name: &str, metadata: VhostMetadata) -> Arc<Vhost> {
        let vhost = Arc::new_cyclic(|this| {
            Vhost::new(
                name.to_string(),
                self.memory.clone(),
                self.store.clone(),
                this.clone(),
            )
        });
        vhost.set_metadata(metadata);
        self.vhosts.write().insert(name.to_string(), vhost.clone());
        vhost
    }

    /// Every vhost.
    pub fn vhosts(&self) -> Vec<Arc<Vhost>> {
        self.vhosts.read().values().cloned().collect()
    }

    /// Looks up a vhost.
    pub fn vhost(&self, name: &str) -> Option<Arc<Vhost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Creates a vhost, or updates the metadata of an existing one; true when created.
    pub fn add_vhost(&self, name: &str, metadata: VhostMetadata) -> bool {
        let created = match self.vhost(name) {
            Some(existing) => {
                existing.set_metadata(metadata);
                false
            }
            None => {
                self.insert_vhost(name, metadata);
                true
            }
        };
        self.save_vhosts();
        created
    }

    /// Deletes a vhost with everything in it and every permission on it; false when it did
    /// not exist. The listeners close its connections.
    pub fn delete_vhost(&self, name: &str) -> bool {
        let Some(vhost) = self.vhosts.write().remove(name) else {
            return false;
        };
        vhost.destroy();
        self.users.vhost_deleted(name);
        self.save_vhosts();
        true
    }

    /// Adds or replaces a policy in its vhost (and saves it).
    pub fn put_policy(&self, definition: PolicyDefinition) -> CoreResult<()> {
        let vhost = self
            .vhost(&definition.vhost)
            .ok_or_else(|| CoreError::NotFound(format!("no vhost '{}'", definition.vhost)))?;
        vhost.put_policy(Policy::new(definition)?);
        self.save_vhosts();
        Ok(())
    }

    /// Removes a policy; false when there was none.
    pub fn delete_policy(&self, vhost: &str, name: &str) -> bool {
        let removed = self
            .vhost(vhost)
            .is_some_and(|vhost| vhost.delete_policy(name));
        if removed {
            self.save_vhosts();
        }
        removed
    }

    /// Writes the vhosts, their metadata and policies to the store.
    pub fn save_vhosts(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let _order = self.vhosts_save.lock();
        let mut vhosts: Vec<SavedVhost> = self
            .vhosts()
            .iter()
            .map(|vhost| SavedVhost {
                name: vhost.name.clone(),
                metadata: vhost.metadata(),
                policies: vhost
                    .policies()
                    .iter()
                    .map(|policy| policy.definition.clone())
                    .collect(),
            })
            .collect();
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        match serde_json::to_vec_pretty(&vhosts) {
            Ok(bytes) => {
                if let Err(error) = store.save_document(VHOSTS_DOCUMENT, &bytes) {
                    tracing::error!(%error, "cannot save vhosts");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode vhosts"),
        }
    }

    /// The users, their permissions and how they log in.
    pub fn users(&self) -> &Arc<crate::auth::Users> {
        &self.users
    }

    /// The message store, if the broker persists anything.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// The disk alarm.
    pub fn disk(&self) -> &DiskAlarm {
        &self.disk
    }

    /// Why publishers are blocked right now, in the words RabbitMQ's connection.blocked
    /// uses, or None when no resource alarm is raised.
    pub fn resource_alarm(&self) -> Option<&'static str> {
        match (self.memory.over_limit(), self.disk.is_raised()) {
            (false, false) => None,
            (true, false) => Some("low on memory"),
            (false, true) => Some("low on disk"),
            (true, true) => Some("low on memory, low on disk"),
        }
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
        for vhost in self.vhosts() {
            let Some(bytes) = store.load_document(&vhost::definitions_document(&vhost.name)) else {
                continue;
            };
            match serde_json::from_slice::<definitions::Definitions>(&bytes) {
                Ok(definitions) => vhost.restore_definitions(&definitions),
                Err(error) => {
                    tracing::error!(%error, vhost = %vhost.name, "definitions document unreadable; topology not restored")
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
