//! A virtual host: its exchanges and queues, and the operations clients perform on them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::dead_letter::{dead_lettered, is_cycle, DeadLetter};
use super::definitions::{
    table_from_json, table_to_json, BindingDefinition, Definitions, ExchangeDefinition,
    QueueDefinition,
};
use super::error::{CoreError, CoreResult};
use super::exchange::{Binding, Destination, Exchange, ExchangeKind, RouteTargets};
use super::message::Message;
use super::policy::{self, Policy};
use super::queue::{
    ConnectionId, ConsumerId, ConsumerSpec, Queue, QueueHost, QueueSpec, QueueStorage,
};
use super::table::{Table, Value};
use super::MemoryGauge;
use crate::store::{queue_key, Store, Ticket};

/// What a client asks for when declaring an exchange.
#[derive(Debug, Clone, Default)]
pub struct ExchangeDeclare {
    /// The exchange name.
    pub name: String,
    /// Its type name ("direct", "fanout", "topic", "headers").
    pub kind: String,
    /// Only check that it exists.
    pub passive: bool,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Not publishable by clients.
    pub internal: bool,
    /// Extra arguments.
    pub arguments: Table,
}

/// What a client asks for when declaring a queue.
#[derive(Debug, Clone, Default)]
pub struct QueueDeclare {
    /// The queue name; empty for a server-named queue.
    pub name: String,
    /// Only check that it exists.
    pub passive: bool,
    /// Survives restarts.
    pub durable: bool,
    /// Owned by the declaring connection and deleted with it.
    pub exclusive: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Extra arguments (`x-message-ttl`, …).
    pub arguments: Table,
}

/// The outcome of a queue declaration.
#[derive(Debug, Clone)]
pub struct QueueDeclared {
    /// The queue (its name is the server-chosen one for server-named queues).
    pub queue: Arc<Queue>,
    /// Ready messages.
    pub message_count: u32,
    /// Consumers.
    pub consumer_count: u32,
}

impl QueueDeclared {
    /// The answer for `queue` as it stands now.
    fn of(queue: Arc<Queue>) -> QueueDeclared {
        let counts = queue.counts();
        QueueDeclared {
            queue,
            message_count: counts.ready,
            consumer_count: counts.consumers,
        }
    }
}

/// What became of a published message.
#[derive(Debug)]
pub enum Routed {
    /// Enqueued on this many queues.
    Queued {
        /// How many queues.
        count: usize,
        /// The store ticket to wait for before confirming, if it was persisted.
        ticket: Option<Ticket>,
        /// Whether a queue at its length limit refused it (`x-overflow` `reject-publish`):
        /// a confirming publisher gets basic.nack, an MQTT v5 one PUBACK 0x97.
        rejected: bool,
    },
    /// No queue matched; the message is handed back.
    Unroutable(Arc<Message>),
}

/// Queue arguments that must be equal when a queue is redeclared (as RabbitMQ checks).
const EQUIVALENT_QUEUE_ARGUMENTS: &[&str] = &[
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-priority",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-type",
    "x-delivery-limit",
];

/// A virtual host.
#[derive(Debug)]
pub struct Vhost {
    /// Its name.
    pub name: String,
    exchanges: RwLock<crate::core::FastMap<String, Arc<Exchange>>>,
    queues: RwLock<crate::core::FastMap<String, Arc<Queue>>>,
    memory: Arc<MemoryGauge>,
    server_named: AtomicU64,
    store: Option<Arc<Store>>,
    definitions_lock: parking_lot::Mutex<()>,
    churn: [AtomicU64; 3],
    /// Description, tags and default queue type, as the management API shows them.
    metadata: RwLock<VhostMetadata>,
    /// Policies, in no particular order (the effective one is chosen per object).
    policies: RwLock<Vec<Arc<Policy>>>,
    /// Set once the vhost is deleted: nothing is persisted for it any more.
    deleted: std::sync::atomic::AtomicBool,
    /// Itself, for its queues to reach (dead letters, `x-expires`) without a cycle.
    this: std::sync::Weak<Vhost>,
}

/// What an operator says about a vhost.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VhostMetadata {
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default, deserialize_with = "crate::auth::tags_from_json")]
    pub tags: Vec<String>,
    /// The queue type of queues declared without `x-queue-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
}

/// Queue declarations, creations and deletions in a vhost since start, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueChurn {
    /// Successful queue.declare calls (new or existing queues).
    pub declared: u64,
    /// Queues created.
    pub created: u64,
    /// Queues deleted (explicitly, auto-delete, exclusive owner gone).
    pub deleted: u64,
}

const DECLARED: usize = 0;
const CREATED: usize = 1;
const DELETED: usize = 2;

impl Vhost {
    /// Creates a vhost with the default exchange and the `amq.*` exchanges.
    /// `this` is the vhost's own `Arc` (it is made with `Arc::new_cyclic`).
    pub fn new(
        name: String,
        memory: Arc<MemoryGauge>,
        store: Option<Arc<Store>>,
        this: std::sync::Weak<Vhost>,
    ) -> Vhost {
        let vhost = Vhost {
            name,
            exchanges: RwLock::new(Default::default()),
            queues: RwLock::new(Default::default()),
            memory,
            server_named: AtomicU64::new(rand::random::<u32>().into()),
            store,
            definitions_lock: parking_lot::Mutex::new(()),
            churn: Default::default(),
            metadata: RwLock::new(VhostMetadata::default()),
            policies: RwLock::new(Vec::new()),
            deleted: std::sync::atomic::AtomicBool::new(false),
            this,
        };
        let standard = [
            ("", ExchangeKind::Direct),
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ];
        {
            let mut exchanges = vhost.exchanges.write();
            for (name, kind) in standard {
                exchanges.insert(
                    name.to_string(),
                    Arc::new(Exchange::new(
                        name.to_string(),
                        kind,
                        true,
                        false,
                        false,
                        Table::default(),
                    )),
                );
            }
        }
        vhost
    }

    /// Counts one queue declaration, creation or deletion for the metrics.
    fn count(&self, counter: usize) {
        self.churn[counter].fetch_add(1, Ordering::Relaxed);
    }

    fn no_exchange(&self, name: &str) -> CoreError {
        CoreError::NotFound(format!(
            "NOT_FOUND - no exchange '{name}' in vhost '{}'",
            self.name
        ))
    }

    fn no_queue(&self, name: &str) -> CoreError {
        CoreError::NotFound(format!(
            "NOT_FOUND - no queue '{name}' in vhost '{}'",
            self.name
        ))
    }

    /// Looks up an exchange.
    pub fn exchange(&self, name: &str) -> CoreResult<Arc<Exchange>> {
        self.exchanges
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_exchange(name))
    }

    /// Every exchange.
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }

    /// Every queue.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// Looks up a queue the connection `owner` may use (405 for another's exclusive queue).
    pub fn queue(&self, name: &str, owner: ConnectionId) -> CoreResult<Arc<Queue>> {
        let queue = self
            .queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| self.no_queue(name))?;
        self.check_owner(&queue, owner)?;
        Ok(queue)
    }

    /// The queue named `name`, whoever owns it (for listings).
    pub fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    fn check_owner(&self, queue: &Queue, owner: ConnectionId) -> CoreResult<()> {
        match queue.exclusive_owner {
            Some(holder) if holder != owner => Err(CoreError::ResourceLocked(format!(
                "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                queue.name, self.name
            ))),
            _ => Ok(()),
        }
    }

    /// Declares (or checks) an exchange.
    pub fn declare_exchange(&self, declare: ExchangeDeclare) -> CoreResult<Arc<Exchange>> {
        if declare.passive {
            return self.exchange(&declare.name);
        }
        let kind = ExchangeKind::parse(&declare.kind).ok_or_else(|| {
            CoreError::PreconditionFailed(format!(
                "PRECONDITION_FAILED - invalid exchange type '{}'",
                declare.kind
            ))
        })?;
        if let Ok(existing) = self.exchange(&declare.name) {
            self.check_exchange_equivalent(&existing, kind, &declare)?;
            return Ok(existing);
        }
        if declare.name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "ACCESS_REFUSED - exchange name '{}' contains reserved prefix 'amq.*'",
                declare.name
            )));
        }
        let mut exchanges = self.exchanges.write();
        let exchange = exchanges
            .entry(declare.name.clone())
            .or_insert_with(|| {
                Arc::new(Exchange::new(
                    declare.name.clone(),
                    kind,
                    declare.durable,
                    declare.auto_delete,
                    declare.internal,
                    declare.arguments.clone(),
                ))
            })
            .clone();
        drop(exchanges);
        exchange.set_policy(policy::effective(
            &self.policies.read(),
            false,
            &exchange.name,
        ));
        if exchange.durable {
            self.persist_definitions();
        }
        Ok(exchange)
    }

    fn check_exchange_equivalent(
        &self,
        existing: &Exchange,
        kind: ExchangeKind,
        declare: &ExchangeDeclare,
    ) -> CoreResult<()> {
        let mismatch = |field: &str, received: String, current: String| {
            Err(CoreError::PreconditionFailed(format!(
                "PRECONDITION_FAILED - inequivalent arg '{field}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current}'",
                existing.name, self.name
            )))
        };
        if existing.kind != kind {
            return mismatch("type", kind.as_str().into(), existing.kind.as_str().into());
        }
        if existing.durable != declare.durable {
            return mismatch(
                "durable",
                declare.durable.to_string(),
                existing.durable.to_string(),
            );
        }
        if existing.auto_delete != declare.auto_delete {
            return mismatch(
                "auto_delete",
                declare.auto_delete.to_string(),
                existing.auto_delete.to_string(),
            );
        }
        if existing.internal != declare.internal {
            return mismatch(
                "internal",
                declare.internal.to_string(),
                existing.internal.to_string(),
            );
        }
        let received = declare.arguments.get("alternate-exchange");
        let current = existing.arguments.get("alternate-exchange");
        if received != current {
            return mismatch(
                "alternate-exchange",
                format!("{received:?}"),
                format!("{current:?}"),
            );
        }
        Ok(())
    }

    /// Deletes an exchange and every binding to or from it.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> CoreResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "ACCESS_REFUSED - operation not permitted on exchange '{name}' in vhost '{}'",
                self.name
            )));
        }
        let exchange = {
            let mut exchanges = self.exchanges.write();
            let Some(exchange) = exchanges.get(name).cloned() else {
                // Deleting a missing exchange succeeds, as RabbitMQ 3.x does.
                return Ok(());
            };
            if if_unused && exchange.binding_count() > 0 {
                return Err(CoreError::PreconditionFailed(format!(
                    "PRECONDITION_FAILED - exchange '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            exchanges.remove(name);
            exchange
        };
        exchange.mark_deleted();
        let durable = exchange.durable;
        let destination = Destination::Exchange(exchange);
        for source in self.exchanges() {
            source.unbind_destination(&destination);
        }
        if durable {
            self.persist_definitions();
        }
        Ok(())
    }

    /// Declares (or checks) a queue for the connection `owner`.
    pub fn declare_queue(
        &self,
        declare: QueueDeclare,
        owner: ConnectionId,
    ) -> CoreResult<QueueDeclared> {
        if declare.passive {
            // A passive declare of an empty name refers to nothing (RabbitMQ answers 404).
            let found = self.queue(&declare.name, owner).map(QueueDeclared::of);
            if found.is_ok() {
                self.count(DECLARED);
            }
            return found;
        }
        if declare.name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "ACCESS_REFUSED - queue name '{}' contains reserved prefix 'amq.*'",
                declare.name
            )));
        }
        let shape = super::arguments::DeclaredQueue {
            name: &declare.name,
            durable: declare.durable,
            exclusive: declare.exclusive,
            auto_delete: declare.auto_delete,
            arguments: &declare.arguments,
        };
        super::arguments::check_queue_arguments(shape, &self.name)?;
        let name = if declare.name.is_empty() {
            self.server_queue_name()
        } else {
            declare.name.clone()
        };
        self.create_queue(name, declare, owner)
    }

    /// The queue behind RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`) for a consumer
    /// of connection `owner`: exclusive, auto-delete, named `amq.rabbitmq.reply-to.<token>`;
    /// replies reach it through the default exchange under that name.
    pub fn declare_reply_queue(&self, owner: ConnectionId) -> CoreResult<Arc<Queue>> {
        let token: u128 = rand::random();
        let name = format!("{REPLY_TO}.{token:032x}");
        let declare = QueueDeclare {
            name: name.clone(),
            passive: false,
            durable: false,
            exclusive: true,
            auto_delete: true,
            arguments: Table::default(),
        };
        Ok(self.create_queue(name, declare, owner)?.queue)
    }

    fn create_queue(
        &self,
        name: String,
        declare: QueueDeclare,
        owner: ConnectionId,
    ) -> CoreResult<QueueDeclared> {
        let mut queues = self.queues.write();
        if let Some(existing) = queues.get(&name) {
            self.check_owner(existing, owner)?;
            self.check_queue_equivalent(existing, &declare)?;
            self.count(DECLARED);
            let existing = existing.clone();
            drop(queues);
            existing.touch();
            return Ok(QueueDeclared::of(existing));
        }
        // Exclusive queues die with their connection, so they are never persisted.
        let store = match (&self.store, declare.durable && !declare.exclusive) {
            (Some(store), true) => Some((store.clone(), queue_key(&self.name, &name))),
            _ => None,
        };
        let queue = Arc::new(Queue::new(
            QueueSpec {
                name: name.clone(),
                durable: declare.durable,
                exclusive_owner: declare.exclusive.then_some(owner),
                auto_delete: declare.auto_delete,
                arguments: declare.arguments,
            },
            self.memory.clone(),
            QueueStorage {
                store,
                pager: self.store.clone(),
                host: Some(self.this.clone() as std::sync::Weak<dyn QueueHost>),
            },
        ));
        queues.insert(name.clone(), queue.clone());
        drop(queues);
        queue.set_policy(policy::effective(&self.policies.read(), true, &name));
        self.count(DECLARED);
        self.count(CREATED);
        // Every queue is bound to the default exchange under its own name.
        if let Ok(default) = self.exchange("") {
            default.bind(Binding {
                destination: Destination::Queue(queue.clone()),
                routing_key: queue.name.clone(),
                arguments: Table::default(),
            });
        }
        if queue.store_key().is_some() {
            self.persist_definitions();
        }
        Ok(QueueDeclared::of(queue))
    }

    fn server_queue_name(&self) -> String {
        let n = self.server_named.fetch_add(1, Ordering::Relaxed);
        let salt: u64 = rand::random();
        format!("amq.gen-{:016x}{:08x}", salt, n as u32)
    }

    fn check_queue_equivalent(&self, existing: &Queue, declare: &QueueDeclare) -> CoreResult<()> {
        let mismatch = |field: &str, received: String, current: String| {
            Err(CoreError::PreconditionFailed(format!(
                "PRECONDITION_FAILED - inequivalent arg '{field}' for queue '{}' in vhost '{}': received '{received}' but current is '{current}'",
                existing.name, self.name
            )))
        };
        if existing.durable != declare.durable {
            return mismatch(
                "durable",
                declare.durable.to_string(),
                existing.durable.to_string(),
            );
        }
        if existing.exclusive_owner.is_some() != declare.exclusive {
            return mismatch(
                "exclusive",
                declare.exclusive.to_string(),
                existing.exclusive_owner.is_some().to_string(),
            );
        }
        if existing.auto_delete != declare.auto_delete {
            return mismatch(
                "auto_delete",
                declare.auto_delete.to_string(),
                existing.auto_delete.to_string(),
            );
        }
        // A queue declared without a type is a classic one.
        let classic = Value::String(bytes::Bytes::from_static(b"classic"));
        for key in EQUIVALENT_QUEUE_ARGUMENTS {
            let typed = |value: Option<&'_ Value>| -> Option<Value> {
                match (value, *key == "x-queue-type") {
                    (None, true) => Some(classic.clone()),
                    (value, _) => value.cloned(),
                }
            };
            let received = typed(declare.arguments.get(key));
            let current = typed(existing.arguments.get(key));
            let (received, current) = (received.as_ref(), current.as_ref());
            if !values_equivalent(received, current) {
                return mismatch(key, describe(received), describe(current));
            }
        }
        Ok(())
    }

    /// Deletes a queue, cancelling its consumers. Returns the number of messages it held.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        owner: ConnectionId,
    ) -> CoreResult<u32> {
        let queue = {
            let mut queues = self.queues.write();
            let Some(queue) = queues.get(name).cloned() else {
                // Deleting a missing queue succeeds with 0 messages, as RabbitMQ does.
                return Ok(0);
            };
            self.check_owner(&queue, owner)?;
            let counts = queue.counts();
            if if_unused && counts.consumers > 0 {
                return Err(CoreError::PreconditionFailed(format!(
                    "PRECONDITION_FAILED - queue '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            if if_empty && counts.ready > 0 {
                return Err(CoreError::PreconditionFailed(format!(
                    "PRECONDITION_FAILED - queue '{name}' in vhost '{}' is not empty",
                    self.name
                )));
            }
            queues.remove(name);
            queue
        };
        Ok(self.forget_queue(queue))
    }

    /// Queue churn since start.
    pub fn queue_churn(&self) -> QueueChurn {
        QueueChurn {
            declared: self.churn[DECLARED].load(Ordering::Relaxed),
            created: self.churn[CREATED].load(Ordering::Relaxed),
            deleted: self.churn[DELETED].load(Ordering::Relaxed),
        }
    }

    fn forget_queue(&self, queue: Arc<Queue>) -> u32 {
        self.count(DELETED);
        let count = queue.delete();
        let durable = queue.store_key().is_some();
        let destination = Destination::Queue(queue);
        for exchange in self.exchanges() {
            let remaining = exchange.unbind_destination(&destination);
            if remaining == 0 && exchange.auto_delete && !exchange.is_deleted() {
                let _ = self.delete_exchange(&exchange.name, false);
            }
        }
        if durable {
            self.persist_definitions();
        }
        count
    }

    /// Empties a queue; returns the number of messages dropped.
    pub fn purge_queue(&self, name: &str, owner: ConnectionId) -> CoreResult<u32> {
        Ok(self.queue(name, owner)?.purge())
    }

    /// Binds a queue to an exchange.
    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: Table,
        owner: ConnectionId,
    ) -> CoreResult<()> {
        let queue = self.queue(queue, owner)?;
        let source = self.bindable_source(exchange)?;
        let durable = source.durable && queue.store_key().is_some();
        let added = source.bind(Binding {
            destination: Destination::Queue(queue),
            routing_key: routing_key.to_string(),
            arguments,
        });
        if durable && added {
            self.persist_definitions();
        }
        Ok(())
    }

    /// Removes a queue binding (a missing binding is not an error, as RabbitMQ).
    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: Table,
        owner: ConnectionId,
    ) -> CoreResult<()> {
        let queue = self.queue(queue, owner)?;
        let source = self.bindable_source(exchange)?;
        let durable = source.durable && queue.store_key().is_some();
        let removed = source.unbind(&Binding {
            destination: Destination::Queue(queue),
            routing_key: routing_key.to_string(),
            arguments,
        });
        self.auto_delete_exchange(&source);
        if durable && removed {
            self.persist_definitions();
        }
        Ok(())
    }

    /// Binds exchange `destination` to exchange `source`.
    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: Table,
    ) -> CoreResult<()> {
        let destination = self.exchange(destination)?;
        let source = self.bindable_source(source)?;
        let durable = source.durable && destination.durable;
        let added = source.bind(Binding {
            destination: Destination::Exchange(destination),
            routing_key: routing_key.to_string(),
            arguments,
        });
        if durable && added {
            self.persist_definitions();
        }
        Ok(())
    }

    /// Removes an exchange-to-exchange binding.
    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        arguments: Table,
    ) -> CoreResult<()> {
        let destination = self.exchange(destination)?;
        let source = self.bindable_source(source)?;
        let durable = source.durable && destination.durable;
        let removed = source.unbind(&Binding {
            destination: Destination::Exchange(destination),
            routing_key: routing_key.to_string(),
            arguments,
        });
        self.auto_delete_exchange(&source);
        if durable && removed {
            self.persist_definitions();
        }
        Ok(())
    }

    fn bindable_source(&self, name: &str) -> CoreResult<Arc<Exchange>> {
        if name.is_empty() {
            return Err(CoreError::AccessRefused(format!(
                "ACCESS_REFUSED - operation not permitted on the default exchange in vhost '{}'",
                self.name
            )));
        }
        self.exchange(name)
    }

    fn auto_delete_exchange(&self, exchange: &Exchange) {
        if exchange.auto_delete && exchange.binding_count() == 0 {
            let _ = self.delete_exchange(&exchange.name, false);
        }
    }

    /// Routes a message through `exchange` into `targets.queues` (cleared first). Fails with
    /// 404 for a missing exchange and 403 for an internal one.
    pub fn route(
        &self,
        exchange: &Exchange,
        message: &Message,
        targets: &mut RouteTargets,
    ) -> CoreResult<()> {
        targets.clear();
        if exchange.internal {
            return Err(CoreError::AccessRefused(format!(
                "ACCESS_REFUSED - cannot publish to internal exchange '{}' in vhost '{}'",
                exchange.name, self.name
            )));
        }
        exchange.route(
            &message.routing_key,
            message.properties.headers.as_ref(),
            targets,
        );
        if targets.queues.is_empty() {
            self.route_alternate(exchange, message, targets, 0);
        }
        Ok(())
    }

    fn route_alternate(
        &self,
        exchange: &Exchange,
        message: &Message,
        targets: &mut RouteTargets,
        depth: u8,
    ) {
        if depth > 8 {
            return;
        }
        let Some(alternate) = exchange.arguments.get_str("alternate-exchange") else {
            return;
        };
        let Ok(alternate) = self.exchange(alternate) else {
            return;
        };
        alternate.route(
            &message.routing_key,
            message.properties.headers.as_ref(),
            targets,
        );
        if targets.queues.is_empty() {
            self.route_alternate(&alternate, message, targets, depth + 1);
        }
    }

    /// Routes a message through `exchange` and enqueues it (shared, not copied) on every
    /// queue it reaches. An unroutable message is handed back (for mandatory returns).
    pub fn publish(
        &self,
        exchange: &Exchange,
        message: Arc<Message>,
        targets: &mut RouteTargets,
    ) -> CoreResult<Routed> {
        self.route(exchange, &message, targets)?;
        if targets.queues.is_empty() {
            return Ok(Routed::Unroutable(message));
        }
        Ok(self.enqueue_routed(message, targets))
    }

    /// Enqueues a routed message on `targets.queues` (drained), writing it to disk first,
    /// once for all of them, if it is persistent and any of them is durable.
    fn enqueue_routed(&self, message: Arc<Message>, targets: &mut RouteTargets) -> Routed {
        let count = targets.queues.len();
        // A persistent message reaching durable queues is written once, for all of them.
        let mut persisted = None;
        if let (Some(store), Some(2)) = (&self.store, message.properties.delivery_mode) {
            let keys: Vec<&str> = targets
                .queues
                .iter()
                .filter_map(|q| q.store_key())
                .collect();
            if !keys.is_empty() {
                persisted = Some(store.persist_publish(&keys, &message));
            }
        }
        let mut rejected = false;
        for queue in targets.queues.drain(..) {
            let msg_id = persisted
                .filter(|_| queue.store_key().is_some())
                .map(|(msg_id, _)| msg_id);
            match queue.enqueue_checked(message.clone(), msg_id) {
                Some(true) => targets.congested = Some(queue),
                Some(false) => {}
                None => rejected = true,
            }
        }
        Routed::Queued {
            count,
            ticket: persisted.map(|(_, ticket)| ticket),
            rejected,
        }
    }

    /// Starts a consumer on a queue.
    pub fn consume(&self, queue: &str, spec: ConsumerSpec) -> CoreResult<Arc<Queue>> {
        let queue = self.queue(queue, spec.owner)?;
        queue.add_consumer(spec)?;
        Ok(queue)
    }

    /// Stops a consumer, deleting an auto-delete queue that lost its last consumer.
    pub fn cancel(&self, queue: &Arc<Queue>, consumer: ConsumerId) {
        let removed = queue.remove_consumer(consumer);
        if removed.auto_delete_now {
            self.remove_queue_if_current(queue);
        }
    }

    /// Deletes `queue` if it is still the one under its name.
    fn remove_queue_if_current(&self, queue: &Arc<Queue>) {
        let mut queues = self.queues.write();
        let still_same = queues
            .get(&queue.name)
            .is_some_and(|q| Arc::ptr_eq(q, queue));
        if still_same {
            queues.remove(&queue.name);
            drop(queues);
            self.forget_queue(queue.clone());
        }
    }

    /// Cleans up after a closed connection: deletes its exclusive queues.
    pub fn connection_closed(&self, owner: ConnectionId) {
        let owned: Vec<Arc<Queue>> = {
            let mut queues = self.queues.write();
            let names: Vec<String> = queues
                .values()
                .filter(|q| q.exclusive_owner == Some(owner))
                .map(|q| q.name.clone())
                .collect();
            names.iter().filter_map(|n| queues.remove(n)).collect()
        };
        for queue in owned {
            self.forget_queue(queue);
        }
    }
}

impl QueueHost for Vhost {
    fn dead_letter(
        &self,
        queue: &Queue,
        exchange: &str,
        routing_key: Option<&str>,
        letters: &[DeadLetter],
    ) {
        // A missing dead-letter exchange drops the letters, as in RabbitMQ.
        let Ok(target) = self.exchange(exchange) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut targets = RouteTargets::default();
        for letter in letters {
            let message = Arc::new(dead_lettered(
                letter,
                &queue.name,
                exchange,
                routing_key,
                now,
            ));
            targets.clear();
            target.route(
                &message.routing_key,
                message.properties.headers.as_ref(),
                &mut targets,
            );
            if targets.queues.is_empty() {
                self.route_alternate(&target, &message, &mut targets, 0);
            }
            targets
                .queues
                .retain(|target| !is_cycle(&message, letter.reason, &target.name));
            if !targets.queues.is_empty() {
                self.enqueue_routed(message, &mut targets);
            }
        }
        targets.congested = None;
    }

    fn expire_queue(&self, queue: &Arc<Queue>) {
        tracing::debug!(vhost = %self.name, queue = %queue.name, "queue unused for its x-expires; deleted");
        self.remove_queue_if_current(queue);
    }
}

impl Vhost {
    /// The durable topology of this vhost.
    pub fn definitions(&self) -> Definitions {
        let mut definitions = Definitions::default();
        let exchanges = self.exchanges();
        for exchange in &exchanges {
            let standard = exchange.name.is_empty() || exchange.name.starts_with("amq.");
            if exchange.durable && !standard {
                definitions.exchanges.push(ExchangeDefinition {
                    name: exchange.name.clone(),
                    vhost: self.name.clone(),
                    kind: exchange.kind.as_str().to_string(),
                    durable: true,
                    auto_delete: exchange.auto_delete,
                    internal: exchange.internal,
                    arguments: table_to_json(&exchange.arguments),
                });
            }
        }
        for queue in self.queues() {
            if queue.store_key().is_some() {
                definitions.queues.push(QueueDefinition {
                    name: queue.name.clone(),
                    vhost: self.name.clone(),
                    durable: true,
                    auto_delete: queue.auto_delete,
                    arguments: table_to_json(&queue.arguments),
                });
            }
        }
        for exchange in exchanges.iter().filter(|e| e.durable && !e.name.is_empty()) {
            for binding in exchange.bindings() {
                let (destination, destination_type) = match &binding.destination {
                    Destination::Queue(q) if q.store_key().is_some() => (q.name.clone(), "queue"),
                    Destination::Exchange(e) if e.durable => (e.name.clone(), "exchange"),
                    _ => continue,
                };
                definitions.bindings.push(BindingDefinition {
                    source: exchange.name.clone(),
                    vhost: self.name.clone(),
                    destination,
                    destination_type: destination_type.to_string(),
                    routing_key: binding.routing_key.clone(),
                    arguments: table_to_json(&binding.arguments),
                });
            }
        }
        definitions
    }

    /// Writes the durable topology to the store (atomically), if there is one.
    fn persist_definitions(&self) {
        let Some(store) = &self.store else {
            return;
        };
        // Serialised under a lock so concurrent changes cannot save an older snapshot last.
        let _guard = self.definitions_lock.lock();
        if self.is_deleted() {
            return;
        }
        match serde_json::to_vec_pretty(&self.definitions()) {
            Ok(bytes) => {
                if let Err(error) = store.save_document(&definitions_document(&self.name), &bytes) {
                    tracing::error!(%error, "cannot save definitions");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode definitions"),
        }
    }

    /// Recreates durable exchanges, queues and bindings saved by an earlier run.
    pub fn restore_definitions(&self, definitions: &Definitions) {
        let nobody = ConnectionId(0);
        for exchange in definitions
            .exchanges
            .iter()
            .filter(|e| e.vhost == self.name)
        {
            let declared = self.declare_exchange(ExchangeDeclare {
                name: exchange.name.clone(),
                kind: exchange.kind.clone(),
                passive: false,
                durable: true,
                auto_delete: exchange.auto_delete,
                internal: exchange.internal,
                arguments: table_from_json(&exchange.arguments),
            });
            if let Err(error) = declared {
                tracing::warn!(exchange = %exchange.name, %error, "exchange not restored");
            }
        }
        for queue in definitions.queues.iter().filter(|q| q.vhost == self.name) {
            let declared = self.declare_queue(
                QueueDeclare {
                    name: queue.name.clone(),
                    passive: false,
                    durable: true,
                    exclusive: false,
                    auto_delete: queue.auto_delete,
                    arguments: table_from_json(&queue.arguments),
                },
                nobody,
            );
            if let Err(error) = declared {
                tracing::warn!(queue = %queue.name, %error, "queue not restored");
            }
        }
        for binding in definitions.bindings.iter().filter(|b| b.vhost == self.name) {
            let arguments = table_from_json(&binding.arguments);
            let result = if binding.destination_type == "exchange" {
                self.bind_exchange(
                    &binding.destination,
                    &binding.source,
                    &binding.routing_key,
                    arguments,
                )
            } else {
                self.bind_queue(
                    &binding.destination,
                    &binding.source,
                    &binding.routing_key,
                    arguments,
                    nobody,
                )
            };
            if let Err(error) = result {
                tracing::warn!(source = %binding.source, destination = %binding.destination, %error, "binding not restored");
            }
        }
    }
}

/// RabbitMQ's direct reply-to pseudo-queue: consuming from it (no-ack) and publishing with
/// it as `reply_to` lets the replies come straight back.
pub const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The store document holding the durable topology of the default vhost.
pub const DEFINITIONS_DOCUMENT: &str = "definitions.json";

/// The store document holding the durable topology of `vhost` (the default vhost keeps the
/// name it always had; others get their name in hex, which any file system takes, or, for a
/// name too long for a file name, the SHA-256 of it).
pub fn definitions_document(vhost: &str) -> String {
    use sha2::{Digest, Sha256};
    if vhost == crate::auth::DEFAULT_VHOST {
        return DEFINITIONS_DOCUMENT.to_string();
    }
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    if vhost.len() <= 48 {
        format!("definitions-{}.json", hex(vhost.as_bytes()))
    } else {
        format!(
            "definitions-sha256-{}.json",
            hex(&Sha256::digest(vhost.as_bytes()))
        )
    }
}

impl Vhost {
    /// Its description, tags and default queue type.
    pub fn metadata(&self) -> VhostMetadata {
        self.metadata.read().clone()
    }

    /// Replaces its description, tags and default queue type.
    pub fn set_metadata(&self, metadata: VhostMetadata) {
        *self.metadata.write() = metadata;
    }

    /// Whether the vhost was deleted (connections may still hold it).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Its policies, by name.
    pub fn policies(&self) -> Vec<Arc<Policy>> {
        let mut policies = self.policies.read().clone();
        policies.sort_by(|a, b| a.name().cmp(b.name()));
        policies
    }

    /// Adds or replaces a policy and hands the effective policies to every queue and
    /// exchange again.
    pub fn put_policy(&self, policy: Arc<Policy>) {
        {
            let mut policies = self.policies.write();
            policies.retain(|p| p.name() != policy.name());
            policies.push(policy);
        }
        self.apply_policies();
    }

    /// Removes a policy; false when there was none.
    pub fn delete_policy(&self, name: &str) -> bool {
        let removed = {
            let mut policies = self.policies.write();
            let before = policies.len();
            policies.retain(|p| p.name() != name);
            before != policies.len()
        };
        if removed {
            self.apply_policies();
        }
        removed
    }

    fn apply_policies(&self) {
        let policies = self.policies.read().clone();
        for queue in self.queues() {
            queue.set_policy(policy::effective(&policies, true, &queue.name));
        }
        for exchange in self.exchanges() {
            exchange.set_policy(policy::effective(&policies, false, &exchange.name));
        }
    }

    /// Deletes everything in the vhost: its queues (and their messages) and its stored
    /// topology. Connections still holding it must be closed by the listeners.
    pub fn destroy(&self) {
        {
            let _guard = self.definitions_lock.lock();
            self.deleted.store(true, Ordering::Release);
        }
        let queues: Vec<Arc<Queue>> = self.queues.write().drain().map(|(_, q)| q).collect();
        for queue in queues {
            self.forget_queue(queue);
        }
        let exchanges: Vec<Arc<Exchange>> =
            self.exchanges.write().drain().map(|(_, e)| e).collect();
        for exchange in exchanges {
            exchange.mark_deleted();
        }
        if let Some(store) = &self.store {
            if let Err(error) = store.delete_document(&definitions_document(&self.name)) {
                tracing::error!(%error, vhost = %self.name, "cannot delete the vhost's definitions");
            }
        }
    }
}

/// Integer arguments compare by value whatever their width (clients pick different types).
fn values_equivalent(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x == y,
        },
        (None, None) => true,
        _ => false,
    }
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None => "none".into(),
        Some(Value::String(s)) => String::from_utf8_lossy(s).into_owned(),
        Some(v) => match v.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{v:?}"),
        },
    }
}
