//! Queues: ordered messages, their consumers, and the deliveries awaiting acknowledgement.
//!
//! A queue is single-owner state behind its own short critical section; nothing here waits
//! while holding the lock. Consumers receive [`ConsumerEvent`]s on their connection's
//! unbounded channel, bounded in practice by two credits per consumer: the prefetch count
//! (unacknowledged deliveries) and a delivery window (deliveries not yet written to the socket,
//! returned by the listener with [`Queue::grant_window`]). So a slow consumer holds at most
//! a window of messages in flight and the rest waits here, where memory limits see it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use super::dead_letter::{DeadLetter, DeathReason};
use super::error::{CoreError, CoreResult};
use super::message::Message;
use super::policy::Policy;
use super::table::{Table, Value};
use super::MemoryGauge;
use crate::store::Store;

pub use super::message::ConnectionId;

/// Identifies one consumer across the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId(pub u64);

/// Ready messages over which a queue with consumers asks its publishers to pause.
pub const FLOW_HIGH_MESSAGES: usize = 16 * 1024;

/// Bytes of in-memory ready bodies over which a queue with consumers asks its publishers
/// to pause; well under [`QUEUE_MEMORY_BUDGET`], so a queue its consumers keep up with
/// never pages.
pub const FLOW_HIGH_BYTES: u64 = 8 * 1024 * 1024;

/// How long consumers of a queue over the flow thresholds may take nothing before they count as
/// stuck (a socket nobody reads, acks that never come). Pausing publishers cannot help stuck
/// consumers catch up, so the queue then stops asking for it and pages instead; it asks again
/// as soon as a consumer takes something.
pub const FLOW_STUCK_AFTER: Duration = Duration::from_millis(100);

/// Bytes of ready message bodies a queue keeps in memory; beyond this, bodies are paged out
/// to the store and read back when they reach the head.
pub const QUEUE_MEMORY_BUDGET: u64 = 32 * 1024 * 1024;

/// Where paging out stops: a little under [`QUEUE_MEMORY_BUDGET`], so that it runs in batches
/// rather than for every message.
const PAGE_OUT_TARGET: u64 = QUEUE_MEMORY_BUDGET / 8 * 7;

/// Most bytes of bodies, and most messages, one paging pass hands to the store for messages
/// that have no disk copy yet: bounds the time a pass holds the queue's lock, while a backlog
/// of small messages still goes out in few passes (each waits for the store's writer).
const PAGE_OUT_SUBMIT_BYTES: u64 = 4 * 1024 * 1024;
const PAGE_OUT_SUBMIT_MESSAGES: usize = 1024;

/// What an entry whose body is paged out still counts against memory.
const PAGED_OVERHEAD: u64 = 128;

/// Store key of transient messages written out only to free memory (no queue is named so,
/// so recovery drops them).
const PAGING_KEY: &str = "\u{0}paging";

/// Deliveries a consumer may have handed to its connection but not yet written.
pub const DELIVERY_WINDOW: u32 = 1024;
/// Bytes of such deliveries (so large messages are held back sooner than small ones).
pub const DELIVERY_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Delivery window a connection owes back to queues: noted per delivery, returned once the
/// connection has written its output.
#[derive(Debug, Default)]
pub struct WindowGrants(Vec<(Arc<Queue>, ConsumerId, u32, u64)>);

impl WindowGrants {
    /// Notes one delivery handed to the connection.
    pub fn note(&mut self, delivery: &Delivery) {
        let bytes = delivery.message.memory_size();
        match self.0.last_mut() {
            Some((_, consumer, count, total)) if *consumer == delivery.consumer => {
                *count += 1;
                *total += bytes;
            }
            _ => self
                .0
                .push((delivery.queue.clone(), delivery.consumer, 1, bytes)),
        }
    }

    /// Returns everything noted to the queues.
    pub fn release(&mut self) {
        for (queue, consumer, count, bytes) in self.0.drain(..) {
            queue.grant_window(consumer, count, bytes);
        }
    }
}

/// What a queue tells a consumer's connection.
#[derive(Debug)]
pub enum ConsumerEvent {
    /// A message for one of the connection's consumers.
    Deliver(Delivery),
    /// The consumer was cancelled by the broker (its queue was deleted).
    Cancelled {
        /// The cancelled consumer.
        consumer: ConsumerId,
    },
}

/// One message handed to a consumer.
#[derive(Debug)]
pub struct Delivery {
    /// The consumer it is for.
    pub consumer: ConsumerId,
    /// The queue it came from (to ack or requeue it).
    pub queue: Arc<Queue>,
    /// Its position in the queue, the handle for ack/requeue (unused for no-ack consumers).
    pub seq: u64,
    /// The message.
    pub message: Arc<Message>,
    /// Whether it was delivered before.
    pub redelivered: bool,
    /// When the message expires, if it has a TTL (MQTT 5 forwards the remaining lifetime).
    pub expires_at: Option<Instant>,
}

/// Where a queue sends a consumer's events: the sending side of its connection's
/// [`ConsumerEvents`].
///
/// A mutex-guarded deque rather than a tokio channel: every delivery crosses it, and this way
/// a send is one uncontended lock and a push, the connection is woken only when its queue of
/// events goes from empty to not empty, and it takes everything waiting in one swap.
#[derive(Clone)]
pub struct EventSink(Arc<Mutex<EventQueue>>);

#[derive(Default)]
struct EventQueue {
    events: VecDeque<ConsumerEvent>,
    /// The connection's task, when it found no events and waits for some.
    waker: Option<Waker>,
    /// The connection is gone: sends fail and hand the event back.
    closed: bool,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl EventSink {
    /// Queues an event for the connection; gives it back if the connection is gone.
    #[allow(clippy::result_large_err)] // The event comes back to be requeued, as with mpsc.
    pub fn send(&self, event: ConsumerEvent) -> Result<(), ConsumerEvent> {
        let mut queue = self.0.lock();
        if queue.closed {
            return Err(event);
        }
        queue.events.push_back(event);
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

/// A connection's consumer events, created when its first consumer starts (so connections
/// that only publish or idle do not pay for it).
#[derive(Debug, Default)]
pub struct ConsumerEvents(Option<(EventSink, VecDeque<ConsumerEvent>)>);

impl ConsumerEvents {
    /// The sender consumers of this connection deliver to.
    pub fn sink(&mut self) -> EventSink {
        match &self.0 {
            Some((sink, _)) => sink.clone(),
            None => {
                let sink = EventSink(Arc::new(Mutex::new(EventQueue::default())));
                self.0 = Some((sink.clone(), VecDeque::new()));
                sink
            }
        }
    }

    /// Waits for the next event; never resolves while no consumer was ever started.
    pub async fn recv(&mut self) -> Option<ConsumerEvent> {
        let Some((sink, taken)) = &mut self.0 else {
            return std::future::pending().await;
        };
        std::future::poll_fn(|context| {
            if let Some(event) = taken.pop_front() {
                return Poll::Ready(Some(event));
            }
            let mut queue = sink.0.lock();
            if !queue.events.is_empty() {
                std::mem::swap(taken, &mut queue.events);
                return Poll::Ready(taken.pop_front());
            }
            if queue.closed {
                return Poll::Ready(None);
            }
            match &queue.waker {
                Some(waker) if waker.will_wake(context.waker()) => {}
                _ => queue.waker = Some(context.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ConsumerEvent> {
        let (sink, taken) = self.0.as_mut()?;
        if taken.is_empty() {
            std::mem::swap(taken, &mut sink.0.lock().events);
        }
        taken.pop_front()
    }

    /// Closes the channel and returns the deliveries still in it, for requeueing.
    pub fn close(&mut self) -> Vec<Delivery> {
        let Some((sink, mut taken)) = self.0.take() else {
            return Vec::new();
        };
        {
            let mut queue = sink.0.lock();
            queue.closed = true;
            queue.waker = None;
            taken.append(&mut queue.events);
        }
        taken
            .into_iter()
            .filter_map(|event| match event {
                ConsumerEvent::Deliver(delivery) => Some(delivery),
                ConsumerEvent::Cancelled { .. } => None,
            })
            .collect()
    }
}

impl Drop for ConsumerEvents {
    fn drop(&mut self) {
        // Senders must see the connection gone even if it never called `close`, and the
        // events left must not stay with the queues' senders (they hold the queues).
        if let Some((sink, _)) = &self.0 {
            let left = {
                let mut queue = sink.0.lock();
                queue.closed = true;
                queue.waker = None;
                std::mem::take(&mut queue.events)
            };
            drop(left);
        }
    }
}

/// What a listener asks for when it starts a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Broker-wide identity, from [`super::Core::next_consumer_id`].
    pub id: ConsumerId,
    /// The client's name for it.
    pub tag: String,
    /// Deliveries count as acknowledged when sent.
    pub no_ack: bool,
    /// No other consumer may use the queue while this one exists.
    pub exclusive: bool,
    /// Maximum unacknowledged deliveries (0 = unlimited).
    pub prefetch: u32,
    /// The connection it belongs to.
    pub owner: ConnectionId,
    /// Where its deliveries go.
    pub sink: EventSink,
    /// `x-priority`: while a consumer of higher priority has credit, lower ones get nothing.
    pub priority: i32,
    /// The limits its AMQP channel puts on all its consumers together (basic.qos with
    /// `global=true`, channel.flow); None for MQTT subscriptions.
    pub channel: Option<Arc<ChannelCredit>>,
}

/// What one AMQP channel allows its consumers together: RabbitMQ 3.x reads basic.qos with
/// `global=true` as a limit on the channel's unacknowledged deliveries across its consumers,
/// and channel.flow with `active=false` stops deliveries to the channel. Shared by the queues
/// its consumers read from; counts are atomics, so two queues racing for the last credit may
/// overshoot the limit by one delivery each, as RabbitMQ's own limiter may.
#[derive(Debug, Default)]
pub struct ChannelCredit {
    /// Most unacknowledged deliveries across the channel's consumers (0: no limit).
    limit: AtomicU32,
    /// Unacknowledged deliveries to the channel's consumers.
    unacked: AtomicU32,
    /// channel.flow `active=false`.
    paused: AtomicBool,
}

impl ChannelCredit {
    /// Sets the channel-wide prefetch limit (0 lifts it).
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Stops (true) or resumes (false) deliveries to the channel.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Whether the channel-wide limit is set and reached: an ack then frees credit that
    /// consumers on other queues may be waiting for.
    pub fn is_full(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit != 0 && self.unacked.load(Ordering::Relaxed) >= limit
    }

    /// Whether the channel takes another delivery (a no-ack one counts against no limit).
    fn allows(&self, no_ack: bool) -> bool {
        if self.paused.load(Ordering::Relaxed) {
            return false;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        no_ack || limit == 0 || self.unacked.load(Ordering::Relaxed) < limit
    }

    fn took(&self) {
        self.unacked.fetch_add(1, Ordering::Relaxed);
    }

    fn returned(&self, count: u32) {
        let _ = self
            .unacked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |unacked| {
                Some(unacked.saturating_sub(count))
            });
    }
}

/// What a queue at its length limit does with a new message (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the oldest ready messages (RabbitMQ's default), dead-lettering them.
    #[default]
    DropHead,
    /// Refuse the new message: a confirming publisher gets basic.nack.
    RejectPublish,
    /// As `RejectPublish`, and the refused message is dead-lettered.
    RejectPublishDeadLetter,
}

impl Overflow {
    /// The `x-overflow` value naming it, if any.
    pub fn parse(text: &str) -> Option<Overflow> {
        match text {
            "drop-head" => Some(Overflow::DropHead),
            "reject-publish" => Some(Overflow::RejectPublish),
            "reject-publish-dlx" => Some(Overflow::RejectPublishDeadLetter),
            _ => None,
        }
    }
}

/// What a queue needs from the vhost holding it: somewhere to publish its dead letters, and a
/// way to go when `x-expires` finds it unused. A trait, so the queue holds its vhost weakly
/// without knowing exchanges.
pub trait QueueHost: Send + Sync + std::fmt::Debug {
    /// Publishes `letters`, which died in `queue`, to the dead-letter exchange `exchange`
    /// (under `routing_key` when set); persists those that need it before returning.
    fn dead_letter(
        &self,
        queue: &Queue,
        exchange: &str,
        routing_key: Option<&str>,
        letters: &[DeadLetter],
    );
    /// Deletes `queue`, unused for its `x-expires`.
    fn expire_queue(&self, queue: &Arc<Queue>);
}

/// The lifetime and length settings in force: the queue's arguments, and its policy's keys
/// where RabbitMQ lets a policy apply (for limits and TTLs the lower of the two; for the
/// dead-letter target and the overflow behaviour the argument wins).
#[derive(Debug, Clone, Default)]
struct QueueLimits {
    /// `x-message-ttl` / `message-ttl`, milliseconds.
    message_ttl: Option<u64>,
    /// `x-expires` / `expires`, milliseconds.
    expires: Option<u64>,
    /// `x-max-length`: most ready messages.
    max_length: Option<usize>,
    /// `x-max-length-bytes`: most body bytes of ready messages.
    max_length_bytes: Option<u64>,
    /// `x-overflow`: what happens at the limits.
    overflow: Overflow,
    /// `x-dead-letter-exchange` ("" is the default exchange).
    dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    dead_letter_routing_key: Option<String>,
    /// `x-delivery-limit` (quorum queues): returns after which a message is dead-lettered.
    delivery_limit: Option<u64>,
}

impl QueueLimits {
    fn resolve(arguments: &Table, policy: Option<&Policy>, quorum: bool) -> QueueLimits {
        let argument = |key: &str| {
            arguments
                .get(key)
                .and_then(Value::as_i64)
                .and_then(|n| u64::try_from(n).ok())
        };
        let from_policy = |key: &str| {
            policy
                .and_then(|policy| policy.get(key))
                .and_then(|value| value.as_u64())
        };
        let lower = |key: &str, policy_key: &str| match (argument(key), from_policy(policy_key)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let text = |key: &str, policy_key: &str| {
            arguments.get_str(key).map(str::to_string).or_else(|| {
                policy
                    .and_then(|policy| policy.get(policy_key))
                    .and_then(|value| value.as_str())
                    .map(str::to_string)
            })
        };
        QueueLimits {
            message_ttl: lower("x-message-ttl", "message-ttl"),
            expires: lower("x-expires", "expires"),
            max_length: lower("x-max-length", "max-length")
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_length_bytes: lower("x-max-length-bytes", "max-length-bytes"),
            overflow: text("x-overflow", "overflow")
                .and_then(|text| Overflow::parse(&text))
                .unwrap_or_default(),
            dead_letter_exchange: text("x-dead-letter-exchange", "dead-letter-exchange"),
            dead_letter_routing_key: text("x-dead-letter-routing-key", "dead-letter-routing-key"),
            delivery_limit: lower("x-delivery-limit", "delivery-limit").filter(|_| quorum),
        }
    }

    fn has_length_limit(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

/// A consumer as the management API lists it.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    /// The client's name for it.
    pub tag: String,
    /// Deliveries count as acknowledged when sent.
    pub no_ack: bool,
    /// Whether it is the queue's only consumer by request.
    pub exclusive: bool,
    /// Its prefetch limit (0 = none).
    pub prefetch: u32,
    /// The connection it belongs to.
    pub owner: ConnectionId,
    /// Whether it gets messages (false for the waiting consumers of a single active
    /// consumer queue).
    pub active: bool,
}

/// A message taken with basic.get.
#[derive(Debug)]
pub struct GetResult {
    /// Its position (the handle for ack/requeue).
    pub seq: u64,
    /// The message.
    pub message: Arc<Message>,
    /// Whether it was delivered before.
    pub redelivered: bool,
    /// Messages still ready after this one.
    pub remaining: u32,
}

/// Counters describing a queue at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages waiting for a consumer.
    pub ready: u32,
    /// Messages delivered and not yet acknowledged.
    pub unacked: u32,
    /// Current consumers.
    pub consumers: u32,
}

/// What a queue is, as declared.
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// Whether it survives a restart.
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<ConnectionId>,
    /// Whether it is deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Declare arguments.
    pub arguments: Table,
}

/// Where a queue keeps what does not stay in memory.
#[derive(Debug, Clone, Default)]
pub struct QueueStorage {
    /// For durable queues: the store and the queue's record key.
    pub store: Option<(Arc<Store>, String)>,
    /// Where bodies are paged out when the queue outgrows its memory budget.
    pub pager: Option<Arc<Store>>,
    /// The vhost holding the queue (dead letters and `x-expires` go through it).
    pub host: Option<Weak<dyn QueueHost>>,
}

/// A queue.
#[derive(Debug)]
pub struct Queue {
    /// Its name.
    pub name: String,
    /// Whether it survives a restart.
    pub durable: bool,
    /// The connection owning an exclusive queue.
    pub exclusive_owner: Option<ConnectionId>,
    /// Whether it is deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Declare arguments.
    pub arguments: Table,
    /// `x-queue-type: quorum` (on one node: a durable queue with quorum rules).
    quorum: bool,
    /// `x-max-priority` (0: not a priority queue).
    max_priority: u8,
    /// `x-single-active-consumer`: only the earliest consumer gets messages; the next one
    /// takes over when it goes.
    single_active: bool,
    memory: Arc<MemoryGauge>,
    /// The vhost holding it.
    host: Option<Weak<dyn QueueHost>>,
    /// Where a durable queue records acks and deliveries, with its record key.
    store: Option<(Arc<Store>, String)>,
    /// Where bodies go when the queue holds more than [`QUEUE_MEMORY_BUDGET`] in memory.
    pager: Option<Arc<Store>>,
    /// Set while the queue's backlog is over [`FLOW_HIGH_MESSAGES`] / [`FLOW_HIGH_BYTES`]
    /// with consumers attached, until it drains to half (see [`Queue::congested`]).
    backlogged: AtomicBool,
    /// Set while `backlogged` and the consumers took nothing for [`FLOW_STUCK_AFTER`].
    consumers_stuck: AtomicBool,
    /// Woken when `backlogged` clears.
    drained: Notify,
    /// The effective policy (set by the vhost when policies or the queue change).
    policy: parking_lot::Mutex<Option<Arc<crate::core::policy::Policy>>>,
    /// On cache lines of its own: the lock and the state are written by the publishers' and
    /// the consumers' cores in turn, and must not share a line with the `Arc` reference
    /// count every delivery increments (measured: sharing one cost 10% of AMQP 4p/4c).
    state: CacheLine<Mutex<QueueState>>,
}

/// A value aligned to (and so alone on) its cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
struct CacheLine<T>(T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A queue's byte and message counters for the metrics. Kept in the locked state, beside
/// what every publish and ack touches anyway: counters on a cache line of their own would
/// bounce between the publishers' and the consumers' cores on every message.
#[derive(Debug, Default)]
struct QueueStats {
    /// Messages ever enqueued.
    published: u64,
    /// Body bytes of every message in the queue, ready or unacknowledged.
    bytes: u64,
    /// Body bytes of unacknowledged messages.
    unacked_bytes: u64,
    /// Ready messages whose bodies are paged out to disk, and their body bytes.
    paged: u64,
    paged_bytes: u64,
    /// Messages kept on disk for this queue (persistent messages in a durable queue).
    persistent: u64,
}

/// What a queue holds and has taken, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueMetrics {
    /// Ready, unacknowledged and consumer counts.
    pub counts: QueueCounts,
    /// Messages ever enqueued.
    pub published: u64,
    /// Messages consumers and basic.get ever took.
    pub delivered: u64,
    /// Body bytes of all messages in the queue.
    pub bytes: u64,
    /// Body bytes of unacknowledged messages.
    pub unacked_bytes: u64,
    /// Ready messages paged out to disk.
    pub paged: u64,
    /// Their body bytes.
    pub paged_bytes: u64,
    /// Messages kept on disk for this queue.
    pub persistent: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// The message, or None while its body is paged out to the store.
    message: Option<Arc<Message>>,
    /// Its memory size when loaded.
    size: u64,
    /// Its body length: what the queue's memory budget counts.
    body_len: u64,
    /// What the memory gauge currently counts for it (its size, or the index overhead).
    accounted: u64,
    /// The store id of a transient message written out only to free memory.
    paged: Option<u64>,
    redelivered: bool,
    /// When the message dies (per-message `expiration` or the queue's `x-message-ttl`).
    expires_at: Option<Instant>,
    /// The message's id in the store, if it is persisted for this queue.
    persisted: Option<u64>,
    /// Its priority lane (0 unless the queue has `x-max-priority`).
    priority: u8,
    /// Times it was returned to the queue unacknowledged (for `x-delivery-limit`).
    returned: u32,
}

#[derive(Debug)]
struct Unacked {
    consumer: Option<ConsumerId>,
    entry: Entry,
}

#[derive(Debug)]
struct Consumer {
    spec: ConsumerSpec,
    unacked: u32,
    window: u32,
    window_bytes: u64,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        self.window > 0
            && self.window_bytes > 0
            && (self.spec.no_ack || self.spec.prefetch == 0 || self.unacked < self.spec.prefetch)
            && self
                .spec
                .channel
                .as_ref()
                .is_none_or(|channel| channel.allows(self.spec.no_ack))
    }
}

/// What the consumers had taken when a publish last looked, to tell draining consumers from
/// stuck ones (see [`Queue::congested`]).
#[derive(Debug, Default)]
struct Progress {
    taken: u64,
    /// Since when publishes found `taken` unchanged; None right after it changed.
    idle_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Ready messages of priority 0 (all of them in a queue without `x-max-priority`); the
    /// only lane that pages out.
    ready: VecDeque<Entry>,
    /// Ready messages of priorities 1 and up, one FIFO lane per priority, so a 100-level
    /// queue costs a bitmap scan per message, not a sort.
    high: super::lanes::PriorityLanes<Entry>,
    /// Bytes of ready messages whose bodies are in memory.
    loaded_bytes: u64,
    /// The last `tail_loaded` ready entries are loaded: where paging out continues.
    tail_loaded: usize,
    unacked: crate::core::FastMap<u64, Unacked>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    next_seq: u64,
    deleted: bool,
    /// Messages consumers and basic.get took, ever (wrapping).
    taken: u64,
    /// Counters for the metrics.
    stats: QueueStats,
    progress: Progress,
    /// The TTLs, limits and dead-letter target in force.
    limits: QueueLimits,
    /// Messages that died under the lock, routed to the dead-letter exchange once it is
    /// released (see [`Queue::unlock`]), and the disk ids (persisted, paged) of each, released
    /// only after the dead-lettered copy is written.
    dying: Vec<DeadLetter>,
    dying_disk: Vec<(Option<u64>, Option<u64>)>,
    /// Whether the queue may have deadlines: a TTL, `x-expires`, or a message that came with an
    /// `expiration`. Queues without any never touch the timer.
    may_expire: bool,
    /// When the timer will next look at the queue.
    timer_at: Option<Instant>,
    /// When a consumer, basic.get or declare last used it (for `x-expires`).
    last_used: Option<Instant>,
    /// The entry just enqueued, while the enqueue offers it to consumers: a TTL of 0 still
    /// lets a waiting consumer have it, as in RabbitMQ.
    fresh: Option<u64>,
    /// Whether a consumer ever came with an `x-priority` (then delivery picks by priority).
    prioritised: bool,
}

impl QueueState {
    /// Ready messages in every lane.
    fn ready_len(&self) -> usize {
        self.ready.len() + self.high.len()
    }

    /// Appends an entry to its priority lane (priority above 0).
    fn push_high_back(&mut self, entry: Entry) {
        self.high.push_back(entry.priority, entry);
    }

    /// Puts an entry back at the front of its priority lane.
    fn push_high_front(&mut self, entry: Entry) {
        self.high.push_front(entry.priority, entry);
    }

    /// Takes the first entry of the highest non-empty priority lane above 0.
    fn pop_high(&mut self) -> Option<Entry> {
        self.high.pop_highest()
    }

    /// Empties the lanes above 0.
    fn drain_high(&mut self) -> Vec<Entry> {
        self.high.drain()
    }
}

/// What removing a consumer left behind.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerRemoved {
    /// Whether the consumer was found.
    pub found: bool,
    /// Whether an auto-delete queue has now lost its last consumer and should go.
    pub auto_delete_now: bool,
}

impl Queue {
    /// Creates an empty queue.
    pub fn new(spec: QueueSpec, memory: Arc<MemoryGauge>, storage: QueueStorage) -> Queue {
        let QueueSpec {
            name,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
        } = spec;
        let QueueStorage { store, pager, host } = storage;
        // RabbitMQ caps priorities at 255.
        let max_priority = arguments
            .get("x-max-priority")
            .and_then(|v| v.as_i64())
            .map_or(0, |max| max.clamp(0, 255) as u8);
        let single_active = matches!(
            arguments.get("x-single-active-consumer"),
            Some(crate::core::Value::Bool(true))
        );
        let quorum = arguments.get_str("x-queue-type") == Some("quorum");
        let limits = QueueLimits::resolve(&arguments, None, quorum);
        let state = QueueState {
            may_expire: limits.expires.is_some() || limits.message_ttl.is_some(),
            last_used: Some(Instant::now()),
            limits,
            ..QueueState::default()
        };
        Queue {
            name,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            quorum,
            max_priority,
            single_active,
            memory,
            host,
            store,
            pager,
            backlogged: AtomicBool::new(false),
            consumers_stuck: AtomicBool::new(false),
            drained: Notify::new(),
            policy: parking_lot::Mutex::new(None),
            state: CacheLine(Mutex::new(state)),
        }
    }

    /// Its consumers.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        self.state
            .lock()
            .consumers
            .iter()
            .enumerate()
            .map(|(index, consumer)| ConsumerInfo {
                tag: consumer.spec.tag.clone(),
                no_ack: consumer.spec.no_ack,
                exclusive: consumer.spec.exclusive,
                prefetch: consumer.spec.prefetch,
                owner: consumer.spec.owner,
                active: !self.single_active || index == 0,
            })
            .collect()
    }

    /// The effective policy, if one matches.
    pub fn policy(&self) -> Option<Arc<crate::core::policy::Policy>> {
        self.policy.lock().clone()
    }

    /// Sets the effective policy; its TTL, length and dead-letter keys apply from now on.
    pub fn set_policy(self: &Arc<Self>, policy: Option<Arc<crate::core::policy::Policy>>) {
        let limits = QueueLimits::resolve(&self.arguments, policy.as_deref(), self.quorum);
        *self.policy.lock() = policy;
        let mut state = self.state.lock();
        state.may_expire |= limits.expires.is_some() || limits.message_ttl.is_some();
        state.limits = limits;
        self.unlock(state);
    }

    /// Offers ready messages to the consumers again: their channel's shared credit grew (an
    /// ack on another queue, channel.flow resumed).
    pub fn kick(self: &Arc<Self>) {
        let mut state = self.state.lock();
        if !state.deleted {
            self.dispatch(&mut state);
        }
        self.unlock(state);
    }

    /// Whether this is a quorum queue (`x-queue-type: quorum`).
    pub fn is_quorum(&self) -> bool {
        self.quorum
    }

    /// Notes a use of the queue (a redeclare): restarts its `x-expires` countdown.
    pub fn touch(self: &Arc<Self>) {
        let mut state = self.state.lock();
        state.last_used = Some(Instant::now());
        self.unlock(state);
    }

    /// Releases the queue's lock, then publishes what died under it to the dead-letter
    /// exchange and arms the timer for the next deadline. Every public operation that may
    /// expire, drop or reject messages ends here rather than dropping the guard, so dead
    /// letters never wait for the next operation.
    fn unlock(self: &Arc<Self>, mut state: MutexGuard<'_, QueueState>) {
        if state.may_expire && !state.deleted {
            self.arm_timer(&mut state);
        }
        if state.dying.is_empty() {
            return;
        }
        let letters = std::mem::take(&mut state.dying);
        let disk = std::mem::take(&mut state.dying_disk);
        let exchange = state.limits.dead_letter_exchange.clone();
        let routing_key = state.limits.dead_letter_routing_key.clone();
        drop(state);
        let host = self.host.as_ref().and_then(Weak::upgrade);
        if let (Some(exchange), Some(host)) = (exchange, host) {
            host.dead_letter(self, &exchange, routing_key.as_deref(), &letters);
        }
        // Only now: the dead-lettered copies are submitted to the store ahead of these
        // records, so a crash in between keeps a message twice, never zero times.
        for (persisted, paged) in disk {
            self.release_disk(persisted, paged);
        }
    }

    /// Schedules the timer for the queue's next deadline (its earliest ready head's expiry,
    /// or `x-expires` while unused) unless it is already due to look by then.
    fn arm_timer(self: &Arc<Self>, state: &mut QueueState) {
        let mut next = state.ready.front().and_then(|entry| entry.expires_at);
        for front in state.high.fronts() {
            if let Some(at) = front.expires_at {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        }
        if let (Some(expires), Some(used), true) = (
            state.limits.expires,
            state.last_used,
            state.consumers.is_empty(),
        ) {
            let at = used + Duration::from_millis(expires);
            next = Some(next.map_or(at, |next| next.min(at)));
        }
        let Some(at) = next else {
            return;
        };
        if state.timer_at.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        state.timer_at = Some(at);
        let target: Weak<dyn super::timers::TimerTarget> = Arc::downgrade(self) as _;
        super::timers::schedule(at, target);
    }

    /// The timer's call: drops (or dead-letters) expired heads, and deletes the queue when it
    /// has been unused for its `x-expires`.
    fn expire(self: &Arc<Self>) {
        let mut state = self.state.lock();
        state.timer_at = None;
        if state.deleted {
            return;
        }
        self.drop_expired(&mut state);
        self.update_flow(&mut state);
        let unused = match (state.limits.expires, state.last_used) {
            (Some(expires), Some(used)) => {
                state.consumers.is_empty() && used.elapsed() >= Duration::from_millis(expires)
            }
            _ => false,
        };
        self.unlock(state);
        if unused {
            if let Some(host) = self.host.as_ref().and_then(Weak::upgrade) {
                host.expire_queue(self);
            }
        }
    }

    /// Whether publishers to this queue should pause: its consumers are behind by more than
    /// the flow thresholds and are draining it, only slower than it fills. Without the pause a
    /// flat-out publisher outruns such consumers until the queue pages to disk, and then
    /// everyone slows down to the disk's pace.
    ///
    /// Consumers that took nothing for [`FLOW_STUCK_AFTER`] (every one of them out of delivery
    /// window because its socket is full, or out of prefetch because its acks stopped) are
    /// stuck, not slow: pausing publishers would not let them catch up but would hold the
    /// publishers to one read per pause for as long as they stay stuck. The queue then
    /// accepts at full speed and pages; the store's back pressure and the memory high
    /// watermark still brake publishers when those cannot keep up.
    pub fn congested(&self) -> bool {
        self.backlogged.load(Ordering::Acquire) && !self.consumers_stuck.load(Ordering::Acquire)
    }

    /// Re-judges whether the consumers of a backlogged queue are stuck; called on publish, so
    /// the clock is read only while publishers keep finding the consumers idle (deliveries
    /// just count).
    fn check_consumers_stuck(&self, state: &mut QueueState) {
        let progress = &mut state.progress;
        if state.taken != progress.taken {
            *progress = Progress {
                taken: state.taken,
                idle_since: None,
            };
            self.consumers_stuck.store(false, Ordering::Release);
            return;
        }
        let now = Instant::now();
        match progress.idle_since {
            None => progress.idle_since = Some(now),
            Some(since) if now.duration_since(since) >= FLOW_STUCK_AFTER => {
                if !self.consumers_stuck.swap(true, Ordering::AcqRel) {
                    // Publishers still pausing for this queue need not wait out their pause.
                    self.drained.notify_waiters();
                }
            }
            Some(_) => {}
        }
    }

    /// Waits until the queue is no longer congested (returns at once if it is not).
    pub async fn drained(&self) {
        let notified = self.drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.congested() {
            notified.await;
        }
    }

    /// Sets or clears `backlogged` after the backlog changed, with hysteresis.
    fn update_flow(&self, state: &mut QueueState) {
        let backlog = state.ready_len();
        if self.backlogged.load(Ordering::Relaxed) {
            let clear = state.consumers.is_empty()
                || state.deleted
                || (backlog <= FLOW_HIGH_MESSAGES / 2 && state.loaded_bytes <= FLOW_HIGH_BYTES / 2);
            if clear {
                self.backlogged.store(false, Ordering::Release);
                self.drained.notify_waiters();
            }
        } else if !state.consumers.is_empty()
            && (backlog > FLOW_HIGH_MESSAGES || state.loaded_bytes > FLOW_HIGH_BYTES)
        {
            // The consumers get FLOW_STUCK_AFTER from now to show they are draining it.
            state.progress = Progress {
                taken: state.taken,
                idle_since: Some(Instant::now()),
            };
            self.consumers_stuck.store(false, Ordering::Release);
            self.backlogged.store(true, Ordering::Release);
        }
    }

    /// Whether the queue has been deleted.
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Ready, unacknowledged and consumer counts.
    pub fn counts(&self) -> QueueCounts {
        let state = self.state.lock();
        QueueCounts {
            ready: saturating_u32(state.ready_len()),
            unacked: saturating_u32(state.unacked.len()),
            consumers: saturating_u32(state.consumers.len()),
        }
    }

    /// Counts and byte totals for the metrics (one lock for the counts).
    pub fn metrics(&self) -> QueueMetrics {
        let state = self.state.lock();
        let stats = &state.stats;
        QueueMetrics {
            counts: QueueCounts {
                ready: saturating_u32(state.ready_len()),
                unacked: saturating_u32(state.unacked.len()),
                consumers: saturating_u32(state.consumers.len()),
            },
            published: stats.published,
            delivered: state.taken,
            bytes: stats.bytes,
            unacked_bytes: stats.unacked_bytes,
            paged: stats.paged,
            paged_bytes: stats.paged_bytes,
            persistent: stats.persistent,
        }
    }

    /// Appends a message and hands it to a consumer if one has credit. `persisted` is its
    /// store id when it was written to disk for this queue.
    /// Returns whether the queue is now congested (see [`Queue::congested`]).
    pub fn enqueue(self: &Arc<Self>, message: Arc<Message>, persisted: Option<u64>) -> bool {
        self.enqueue_checked(message, persisted).unwrap_or(false)
    }

    /// [`Queue::enqueue`], or None when the queue refused the message at its length limit
    /// (`x-overflow` `reject-publish`): the publisher is to be told (basic.nack).
    pub fn enqueue_checked(
        self: &Arc<Self>,
        message: Arc<Message>,
        persisted: Option<u64>,
    ) -> Option<bool> {
        let size = message.memory_size();
        let mut state = self.state.lock();
        if state.deleted {
            if let Some(msg_id) = persisted {
                self.record_ack(msg_id);
            }
            return Some(false);
        }
        let overflow = state.limits.overflow;
        if overflow != Overflow::DropHead && self.at_limit(&state, message.body.len() as u64) {
            if overflow == Overflow::RejectPublishDeadLetter
                && state.limits.dead_letter_exchange.is_some()
            {
                state.dying.push(DeadLetter {
                    message,
                    reason: DeathReason::MaxLength,
                });
                state.dying_disk.push((persisted, None));
                self.unlock(state);
            } else if let Some(msg_id) = persisted {
                self.record_ack(msg_id);
            }
            return None;
        }
        self.memory.add(size);
        let seq = state.next_seq;
        state.next_seq += 1;
        let expires_at = expiry_from(&state.limits, message.properties.expiration.as_deref());
        if expires_at.is_some() {
            state.may_expire = true;
            state.fresh = Some(seq);
        }
        // Near the budget, a transient message gets a disk copy right away, so its body can
        // be dropped by the time paging reaches it. From the paging target on, not from the
        // budget: otherwise every pass leaves the messages enqueued while it brought the queue
        // from the budget down to the target without a copy, and the next pass must wait for
        // the store to write those before it can drop anything behind them.
        let body_len = message.body.len() as u64;
        let priority = self.priority_of(&message);
        let over_budget = state.loaded_bytes + body_len > QUEUE_MEMORY_BUDGET;
        let near_budget = state.loaded_bytes + body_len > PAGE_OUT_TARGET;
        // Only lane 0 pages out: a message of a higher lane gets no disk copy for it.
        let paged = match (&self.pager, persisted, near_budget && priority == 0) {
            (Some(pager), None, true) => Some(pager.persist_publish(&[PAGING_KEY], &message).0),
            _ => None,
        };
        let entry = Entry {
            seq,
            message: Some(message),
            size,
            body_len,
            accounted: size,
            paged,
            redelivered: false,
            expires_at,
            persisted,
            priority,
            returned: 0,
        };
        if priority > 0 {
            state.push_high_back(entry);
        } else {
            state.ready.push_back(entry);
            state.tail_loaded += 1;
        }
        state.stats.published += 1;
        state.stats.bytes += body_len;
        if persisted.is_some() {
            state.stats.persistent += 1;
        }
        state.loaded_bytes += body_len;
        if over_budget {
            self.page_out(&mut state);
        }
        self.dispatch(&mut state);
        state.fresh = None;
        if overflow == Overflow::DropHead && state.limits.has_length_limit() {
            self.drop_head(&mut state);
        }
        self.update_flow(&mut state);
        if self.backlogged.load(Ordering::Relaxed) {
            self.check_consumers_stuck(&mut state);
        }
        self.unlock(state);
        Some(self.congested())
    }

    /// Whether one more ready message of `body_len` bytes would pass a length limit.
    fn at_limit(&self, state: &QueueState, body_len: u64) -> bool {
        let ready_bytes = state.stats.bytes.saturating_sub(state.stats.unacked_bytes);
        let limits = &state.limits;
        limits
            .max_length
            .is_some_and(|max| state.ready_len() >= max)
            || limits
                .max_length_bytes
                .is_some_and(|max| ready_bytes + body_len > max)
    }

    /// Drops the oldest ready messages while the queue is over a length limit (`drop-head`,
    /// RabbitMQ's default overflow).
    fn drop_head(&self, state: &mut QueueState) {
        loop {
            let ready_bytes = state.stats.bytes.saturating_sub(state.stats.unacked_bytes);
            let limits = &state.limits;
            let over = limits.max_length.is_some_and(|max| state.ready_len() > max)
                || limits.max_length_bytes.is_some_and(|max| ready_bytes > max);
            if !over {
                return;
            }
            let entry = match state.pop_high() {
                Some(entry) => entry,
                None => {
                    let Some(entry) = state.ready.pop_front() else {
                        return;
                    };
                    state.tail_loaded = state.tail_loaded.min(state.ready.len());
                    entry
                }
            };
            if entry.message.is_some() {
                state.loaded_bytes = state.loaded_bytes.saturating_sub(entry.body_len);
            }
            Self::paged_in(&mut state.stats, &entry);
            self.kill(state, entry, DeathReason::MaxLength);
        }
    }

    /// Gives up on an entry already out of the ready list and the unacked map: dead-letters
    /// it when the queue has a dead-letter exchange (routed once the lock is released), or
    /// forgets it.
    fn kill(&self, state: &mut QueueState, mut entry: Entry, reason: DeathReason) {
        if state.limits.dead_letter_exchange.is_none() {
            self.release(&mut state.stats, &entry);
            return;
        }
        let message = match entry.message.take() {
            Some(message) => Some(message),
            None => entry
                .persisted
                .or(entry.paged)
                .and_then(|id| self.pager.as_ref().and_then(|pager| pager.read_message(id)))
                .map(Arc::new),
        };
        self.release_counts(&mut state.stats, &entry);
        match message {
            Some(message) => {
                state.dying.push(DeadLetter { message, reason });
                state.dying_disk.push((entry.persisted, entry.paged));
            }
            None => {
                tracing::error!(queue = %self.name, seq = entry.seq, "paged message unreadable; not dead-lettered");
                self.release_disk(entry.persisted, entry.paged);
            }
        }
    }

    /// Drops bodies of the oldest loaded entries at the tail that have a disk copy, until
    /// the queue is back under its memory budget.
    fn page_out(&self, state: &mut QueueState) {
        let Some(pager) = &self.pager else {
            return;
        };
        let len = state.ready.len();
        let mut index = len - state.tail_loaded.min(len);
        // The first entry still holding its body: where the next pass resumes.
        let mut resume = None;
        let mut submitted = 0;
        let mut submitted_bytes = 0;
        while state.loaded_bytes > PAGE_OUT_TARGET && index < len {
            let Some(entry) = state.ready.get_mut(index) else {
                break;
            };
            if let Some(message) = &entry.message {
                match entry.persisted.or(entry.paged) {
                    Some(disk_id) if pager.is_written(disk_id) => {
                        entry.message = None;
                        state.stats.paged += 1;
                        state.stats.paged_bytes += entry.body_len;
                        let freed = entry.size.saturating_sub(PAGED_OVERHEAD);
                        entry.accounted = entry.size - freed;
                        self.memory.sub(freed);
                        state.loaded_bytes = state.loaded_bytes.saturating_sub(entry.body_len);
                    }
                    Some(_) => {
                        // Records reach the disk in order: nothing after this one is written
                        // yet either. The next pass resumes here.
                        resume.get_or_insert(index);
                        break;
                    }
                    None if submitted < PAGE_OUT_SUBMIT_MESSAGES
                        && submitted_bytes < PAGE_OUT_SUBMIT_BYTES =>
                    {
                        // Enqueued while the queue was well under budget: write it out now.
                        entry.paged = Some(pager.persist_publish(&[PAGING_KEY], message).0);
                        submitted += 1;
                        submitted_bytes += entry.body_len;
                        resume.get_or_insert(index);
                    }
                    None => {
                        resume.get_or_insert(index);
                        break;
                    }
                }
            }
            index += 1;
        }
        state.tail_loaded = len - resume.unwrap_or(index);
    }

    /// Takes the first ready entry with its body loaded (reading it back if paged out);
    /// entries whose body cannot be read are dropped with a log line.
    fn pop_ready(&self, state: &mut QueueState) -> Option<Entry> {
        loop {
            let mut entry = match state.pop_high() {
                Some(entry) => entry,
                None => {
                    let entry = state.ready.pop_front()?;
                    state.tail_loaded = state.tail_loaded.min(state.ready.len());
                    entry
                }
            };
            if entry.message.is_some() {
                state.loaded_bytes = state.loaded_bytes.saturating_sub(entry.body_len);
                return Some(entry);
            }
            Self::paged_in(&mut state.stats, &entry);
            let loaded = entry
                .persisted
                .or(entry.paged)
                .and_then(|id| self.pager.as_ref().and_then(|pager| pager.read_message(id)));
            match loaded {
                Some(message) => {
                    self.memory.add(entry.size.saturating_sub(entry.accounted));
                    entry.accounted = entry.size;
                    entry.message = Some(Arc::new(message));
                    return Some(entry);
                }
                None => {
                    tracing::error!(queue = %self.name, seq = entry.seq, "paged message unreadable; dropped");
                    self.release(&mut state.stats, &entry);
                }
            }
        }
    }

    /// Puts a loaded entry back at the front (a delivery that could not be handed over).
    fn push_front_loaded(state: &mut QueueState, entry: Entry) {
        state.loaded_bytes += entry.body_len;
        if entry.priority > 0 {
            state.push_high_front(entry);
            return;
        }
        let all_loaded = state.tail_loaded == state.ready.len();
        state.ready.push_front(entry);
        if all_loaded {
            state.tail_loaded += 1;
        }
    }

    /// Whether this queue keeps persistent messages on disk (and under which key).
    pub fn store_key(&self) -> Option<&str> {
        self.store.as_ref().map(|(_, key)| key.as_str())
    }

    /// Puts messages recovered from the store back, in order; delivered ones are marked
    /// redelivered.
    pub fn restore(self: &Arc<Self>, messages: Vec<crate::store::RecoveredMessage>) {
        let mut state = self.state.lock();
        for recovered in messages {
            let size = recovered.size;
            let body_len = recovered.body_len;
            let loaded = recovered.message.is_some();
            let accounted = if loaded { size } else { PAGED_OVERHEAD };
            self.memory.add(accounted);
            let seq = state.next_seq;
            state.next_seq += 1;
            let expires_at = expiry_from(&state.limits, recovered.expiration.as_deref());
            state.may_expire |= expires_at.is_some();
            // A body recovery left on disk comes back in lane 0: its priority is read with it.
            let priority = recovered
                .message
                .as_ref()
                .map_or(0, |message| self.priority_of(message));
            let entry = Entry {
                seq,
                message: recovered.message,
                size,
                body_len,
                accounted,
                paged: None,
                redelivered: recovered.delivered,
                expires_at,
                persisted: Some(recovered.msg_id),
                priority,
                returned: 0,
            };
            state.stats.bytes += body_len;
            state.stats.persistent += 1;
            if priority > 0 {
                state.loaded_bytes += body_len;
                state.push_high_back(entry);
                continue;
            }
            state.ready.push_back(entry);
            if loaded {
                state.loaded_bytes += body_len;
                state.tail_loaded += 1;
            } else {
                state.stats.paged += 1;
                state.stats.paged_bytes += body_len;
                state.tail_loaded = 0;
            }
            if state.loaded_bytes > QUEUE_MEMORY_BUDGET {
                self.page_out(&mut state);
            }
        }
        self.dispatch(&mut state);
        self.unlock(state);
    }

    fn record_ack(&self, msg_id: u64) {
        if let Some((store, key)) = &self.store {
            store.record_ack(key, msg_id);
        }
    }

    /// Forgets an entry for good: memory accounting and, if on disk, an ack record.
    fn release(&self, stats: &mut QueueStats, entry: &Entry) {
        self.release_counts(stats, entry);
        self.release_disk(entry.persisted, entry.paged);
    }

    /// The memory and byte accounting part of [`Queue::release`].
    fn release_counts(&self, stats: &mut QueueStats, entry: &Entry) {
        stats.bytes = stats.bytes.wrapping_sub(entry.body_len);
        if entry.persisted.is_some() {
            stats.persistent = stats.persistent.wrapping_sub(1);
        }
        self.memory.sub(entry.accounted);
    }

    /// The disk part of [`Queue::release`]: ack records for the queue's copy (`persisted`)
    /// and a paging copy (`paged`).
    fn release_disk(&self, persisted: Option<u64>, paged: Option<u64>) {
        if let Some(msg_id) = persisted {
            self.record_ack(msg_id);
        }
        if let (Some(msg_id), Some(pager)) = (paged, &self.pager) {
            pager.record_ack(PAGING_KEY, msg_id);
        }
    }

    /// Counts a ready entry whose body was paged out leaving the ready list.
    fn paged_in(stats: &mut QueueStats, entry: &Entry) {
        if entry.message.is_none() {
            stats.paged = stats.paged.wrapping_sub(1);
            stats.paged_bytes = stats.paged_bytes.wrapping_sub(entry.body_len);
        }
    }

    /// Counts a delivery now awaiting its acknowledgement.
    fn awaits_ack(stats: &mut QueueStats, entry: &Entry) {
        stats.unacked_bytes += entry.body_len;
    }

    /// Counts a delivery no longer awaiting its acknowledgement.
    fn acked_or_requeued(stats: &mut QueueStats, entry: &Entry) {
        stats.unacked_bytes = stats.unacked_bytes.wrapping_sub(entry.body_len);
    }

    /// Notes a first delivery in the store, so a restart marks the message redelivered.
    fn note_delivered(&self, entry: &Entry) {
        if let (Some(msg_id), false) = (entry.persisted, entry.redelivered) {
            if let Some((store, key)) = &self.store {
                store.record_delivery(key, msg_id);
            }
        }
    }

    /// Registers a consumer and starts delivering to it.
    pub fn add_consumer(self: &Arc<Self>, spec: ConsumerSpec) -> CoreResult<()> {
        let mut state = self.state.lock();
        if state.deleted {
            return Err(CoreError::NotFound(format!(
                "NOT_FOUND - no queue '{}' in vhost '/'",
                self.name
            )));
        }
        let locked = state.consumers.iter().any(|c| c.spec.exclusive);
        if locked || (spec.exclusive && !state.consumers.is_empty()) {
            return Err(CoreError::AccessRefused(format!(
                "ACCESS_REFUSED - queue '{}' in vhost '/' in exclusive use",
                self.name
            )));
        }
        // Kept in descending priority, arrival order within one (a single active consumer
        // queue ignores priorities, as RabbitMQ 3.10 does, and keeps arrival order).
        let position = if self.single_active {
            state.consumers.len()
        } else {
            state
                .consumers
                .partition_point(|c| c.spec.priority >= spec.priority)
        };
        state.prioritised |= spec.priority != 0;
        state.consumers.insert(
            position,
            Consumer {
                spec,
                unacked: 0,
                window: DELIVERY_WINDOW,
                window_bytes: DELIVERY_WINDOW_BYTES,
            },
        );
        state.last_used = Some(Instant::now());
        self.dispatch(&mut state);
        self.unlock(state);
        Ok(())
    }

    /// Removes a consumer. Its unacknowledged deliveries stay with its channel.
    pub fn remove_consumer(self: &Arc<Self>, consumer: ConsumerId) -> ConsumerRemoved {
        let mut state = self.state.lock();
        let position = state.consumers.iter().position(|c| c.spec.id == consumer);
        let found = position.is_some();
        if let Some(position) = position {
            let removed = state.consumers.remove(position);
            // Its deliveries stay unacknowledged with its channel, but no longer hold the
            // channel's shared credit (the consumer that counted them is gone).
            if let (Some(channel), false) = (&removed.spec.channel, removed.spec.no_ack) {
                channel.returned(removed.unacked);
            }
        }
        if found && self.single_active && !state.deleted {
            // The next consumer takes over what the active one left.
            self.dispatch(&mut state);
        }
        if state.consumers.is_empty() {
            // x-expires counts from the moment the queue was last used.
            state.last_used = Some(Instant::now());
        }
        self.update_flow(&mut state);
        let removed = ConsumerRemoved {
            found,
            auto_delete_now: found
                && self.auto_delete
                && state.consumers.is_empty()
                && !state.deleted,
        };
        self.unlock(state);
        removed
    }

    /// Returns delivery credit: the listener wrote `count` of this consumer's deliveries.
    pub fn grant_window(self: &Arc<Self>, consumer: ConsumerId, count: u32, bytes: u64) {
        let mut state = self.state.lock();
        if let Some(c) = state.consumers.iter_mut().find(|c| c.spec.id == consumer) {
            c.window = c.window.saturating_add(count).min(DELIVERY_WINDOW);
            c.window_bytes = c
                .window_bytes
                .saturating_add(bytes)
                .min(DELIVERY_WINDOW_BYTES);
            self.dispatch(&mut state);
        }
        self.unlock(state);
    }

    /// Acknowledges deliveries: they leave the queue for good.
    pub fn ack(self: &Arc<Self>, seqs: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock();
        for seq in seqs {
            if let Some(unacked) = state.unacked.remove(&seq) {
                Self::acked_or_requeued(&mut state.stats, &unacked.entry);
                self.release(&mut state.stats, &unacked.entry);
                release_credit(&mut state, unacked.consumer);
            }
        }
        self.dispatch(&mut state);
        self.unlock(state);
    }

    /// Rejects deliveries without requeueing (basic.reject / basic.nack with
    /// `requeue=false`): dead-lettered with reason `rejected` when the queue has a
    /// dead-letter exchange, otherwise dropped.
    pub fn reject(self: &Arc<Self>, seqs: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock();
        for seq in seqs {
            if let Some(unacked) = state.unacked.remove(&seq) {
                Self::acked_or_requeued(&mut state.stats, &unacked.entry);
                release_credit(&mut state, unacked.consumer);
                self.kill(&mut state, unacked.entry, DeathReason::Rejected);
            }
        }
        self.dispatch(&mut state);
        self.unlock(state);
    }

    /// Puts deliveries back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, seqs: impl IntoIterator<Item = u64>) {
        let mut state = self.state.lock();
        for seq in seqs {
            if let Some(unacked) = state.unacked.remove(&seq) {
                Self::acked_or_requeued(&mut state.stats, &unacked.entry);
                release_credit(&mut state, unacked.consumer);
                let mut entry = unacked.entry;
                entry.redelivered = true;
                entry.returned = entry.returned.saturating_add(1);
                if state
                    .limits
                    .delivery_limit
                    .is_some_and(|limit| u64::from(entry.returned) > limit)
                {
                    self.kill(&mut state, entry, DeathReason::DeliveryLimit);
                    continue;
                }
                if entry.priority > 0 {
                    state.loaded_bytes += entry.body_len;
                    let seq = entry.seq;
                    state
                        .high
                        .insert_ordered(entry.priority, entry, |queued| queued.seq >= seq);
                    continue;
                }
                let len = state.ready.len();
                let position = state.ready.partition_point(|e| e.seq < entry.seq);
                if position >= len - state.tail_loaded.min(len) {
                    state.tail_loaded += 1;
                }
                state.loaded_bytes += entry.body_len;
                state.ready.insert(position, entry);
            }
        }
        self.dispatch(&mut state);
        self.unlock(state);
    }

    /// Takes the next ready message (basic.get). Without `no_ack` it stays unacknowledged.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<GetResult> {
        let mut state = self.state.lock();
        state.last_used = Some(Instant::now());
        self.drop_expired(&mut state);
        let Some(entry) = self.pop_ready(&mut state) else {
            self.unlock(state);
            return None;
        };
        state.taken = state.taken.wrapping_add(1);
        let Some(message) = entry.message.clone() else {
            self.unlock(state);
            return None;
        };
        let result = GetResult {
            seq: entry.seq,
            message,
            redelivered: entry.redelivered,
            remaining: saturating_u32(state.ready_len()),
        };
        if no_ack {
            self.release(&mut state.stats, &entry);
        } else {
            self.note_delivered(&entry);
            Self::awaits_ack(&mut state.stats, &entry);
            state.unacked.insert(
                entry.seq,
                Unacked {
                    consumer: None,
                    entry,
                },
            );
        }
        self.unlock(state);
        Some(result)
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut state = self.state.lock();
        let count = state.ready_len();
        let high = state.drain_high();
        let QueueState { ready, stats, .. } = &mut *state;
        for entry in ready.drain(..).chain(high) {
            Self::paged_in(stats, &entry);
            self.release(stats, &entry);
        }
        state.loaded_bytes = 0;
        state.tail_loaded = 0;
        self.update_flow(&mut state);
        saturating_u32(count)
    }

    /// Marks the queue deleted, cancels its consumers and drops its messages. Returns the
    /// number of ready messages it held.
    pub(crate) fn delete(&self) -> u32 {
        let mut state = self.state.lock();
        if state.deleted {
            return 0;
        }
        state.deleted = true;
        for consumer in state.consumers.drain(..) {
            // A closed connection no longer cares about its consumer.
            let _ = consumer.spec.sink.send(ConsumerEvent::Cancelled {
                consumer: consumer.spec.id,
            });
        }
        let count = state.ready_len();
        let high = state.drain_high();
        let QueueState {
            ready,
            unacked,
            stats,
            ..
        } = &mut *state;
        for entry in ready.drain(..).chain(high) {
            Self::paged_in(stats, &entry);
            self.release(stats, &entry);
        }
        for (_, unacked) in unacked.drain() {
            Self::acked_or_requeued(stats, &unacked.entry);
            self.release(stats, &unacked.entry);
        }
        self.update_flow(&mut state);
        saturating_u32(count)
    }

    /// Hands ready messages to consumers with credit, round-robin, then updates the flow
    /// state.
    fn dispatch(self: &Arc<Self>, state: &mut QueueState) {
        let delivered = self.dispatch_ready(state);
        if self.backlogged.load(Ordering::Relaxed) {
            if delivered && self.consumers_stuck.load(Ordering::Relaxed) {
                // They move again: publishers should pause from their next publish on.
                self.check_consumers_stuck(state);
            }
            self.update_flow(state);
        }
    }

    /// Returns whether any message was delivered.
    fn dispatch_ready(self: &Arc<Self>, state: &mut QueueState) -> bool {
        let mut delivered = false;
        if state.consumers.is_empty() {
            return delivered;
        }
        self.drop_expired(state);
        while state.ready_len() > 0 {
            let Some(index) = pick_consumer(state, self.single_active) else {
                return delivered;
            };
            let Some(entry) = self.pop_ready(state) else {
                return delivered;
            };
            if entry.expires_at.is_some_and(|at| at <= Instant::now())
                && state.fresh != Some(entry.seq)
            {
                self.kill(state, entry, DeathReason::Expired);
                continue;
            }
            let Some(message) = entry.message.clone() else {
                continue;
            };
            let consumer = &mut state.consumers[index];
            let delivery = Delivery {
                consumer: consumer.spec.id,
                queue: self.clone(),
                seq: entry.seq,
                message,
                redelivered: entry.redelivered,
                expires_at: entry.expires_at,
            };
            if consumer
                .spec
                .sink
                .send(ConsumerEvent::Deliver(delivery))
                .is_err()
            {
                // The connection is gone without cancelling: forget the consumer and keep
                // the message for the others.
                state.consumers.remove(index);
                Self::push_front_loaded(state, entry);
                continue;
            }
            delivered = true;
            state.taken = state.taken.wrapping_add(1);
            let consumer = &mut state.consumers[index];
            consumer.window -= 1;
            consumer.window_bytes = consumer.window_bytes.saturating_sub(entry.size);
            if consumer.spec.no_ack {
                self.release(&mut state.stats, &entry);
            } else {
                self.note_delivered(&entry);
                Self::awaits_ack(&mut state.stats, &entry);
                consumer.unacked += 1;
                if let Some(channel) = &consumer.spec.channel {
                    channel.took();
                }
                let id = consumer.spec.id;
                state.unacked.insert(
                    entry.seq,
                    Unacked {
                        consumer: Some(id),
                        entry,
                    },
                );
            }
        }
        delivered
    }
}

impl Queue {
    /// The lane of a message: its priority property capped at `x-max-priority` (0 in a
    /// queue without one).
    fn priority_of(&self, message: &Message) -> u8 {
        if self.max_priority == 0 {
            return 0;
        }
        message
            .properties
            .priority
            .unwrap_or(0)
            .min(self.max_priority)
    }

    /// Drops (or dead-letters) expired messages at the heads of the lanes (RabbitMQ expires
    /// at the head only, each priority on its own).
    fn drop_expired(&self, state: &mut QueueState) {
        if !state.may_expire {
            return;
        }
        let now = Instant::now();
        let expired = |entry: &Entry, fresh: Option<u64>| {
            entry.expires_at.is_some_and(|at| at <= now) && fresh != Some(entry.seq)
        };
        for priority in state.high.priorities() {
            let fresh = state.fresh;
            while let Some(entry) = state
                .high
                .pop_front_if(priority, |entry| expired(entry, fresh))
            {
                state.loaded_bytes = state.loaded_bytes.saturating_sub(entry.body_len);
                self.kill(state, entry, DeathReason::Expired);
            }
        }
        while state
            .ready
            .front()
            .is_some_and(|entry| expired(entry, state.fresh))
        {
            if let Some(entry) = state.ready.pop_front() {
                if entry.message.is_some() {
                    state.loaded_bytes = state.loaded_bytes.saturating_sub(entry.body_len);
                }
                Self::paged_in(&mut state.stats, &entry);
                state.tail_loaded = state.tail_loaded.min(state.ready.len());
                self.kill(state, entry, DeathReason::Expired);
            }
        }
    }
}

/// The deadline for a message with this `expiration` property (milliseconds) entering a queue
/// now: the earlier of it and the queue's message TTL, as RabbitMQ applies them.
fn expiry_from(limits: &QueueLimits, expiration: Option<&str>) -> Option<Instant> {
    let per_message = expiration.and_then(|ms| ms.parse::<u64>().ok());
    let ttl = match (per_message, limits.message_ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }?;
    Some(Instant::now() + Duration::from_millis(ttl))
}

impl super::timers::TimerTarget for Queue {
    fn on_timer(self: Arc<Self>) {
        self.expire();
    }
}

fn pick_consumer(state: &mut QueueState, single_active: bool) -> Option<usize> {
    if single_active {
        // Consumers are kept in the order they came: the first is the active one.
        return state
            .consumers
            .first()
            .filter(|c| c.has_credit())
            .map(|_| 0);
    }
    if state.prioritised {
        return pick_by_priority(state);
    }
    let count = state.consumers.len();
    for offset in 0..count {
        let index = (state.next_consumer + offset) % count;
        if state.consumers[index].has_credit() {
            state.next_consumer = index + 1;
            return Some(index);
        }
    }
    None
}

/// Round-robin within the highest priority that has a consumer with credit (consumers are
/// sorted by descending priority).
fn pick_by_priority(state: &mut QueueState) -> Option<usize> {
    let count = state.consumers.len();
    let mut start = 0;
    while start < count {
        let priority = state.consumers[start].spec.priority;
        let len = state.consumers[start..]
            .iter()
            .take_while(|c| c.spec.priority == priority)
            .count();
        for offset in 0..len {
            let index = start + (state.next_consumer + offset) % len;
            if state.consumers[index].has_credit() {
                state.next_consumer = index - start + 1;
                return Some(index);
            }
        }
        start += len;
    }
    None
}

fn release_credit(state: &mut QueueState, consumer: Option<ConsumerId>) {
    if let Some(id) = consumer {
        if let Some(c) = state.consumers.iter_mut().find(|c| c.spec.id == id) {
            c.unacked = c.unacked.saturating_sub(1);
            if let Some(channel) = &c.spec.channel {
                channel.returned(1);
            }
        }
    }
}

fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "queue_test.rs"]
mod tests;
