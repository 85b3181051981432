//! Exchanges and their routing tables.
//!
//! Each exchange owns its bindings behind its own lock (never a vhost-wide one): direct
//! exchanges index bindings by key, topic exchanges by a word trie, fanout keeps a list, and
//! headers exchanges test each binding's arguments against the message headers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use super::queue::Queue;
use super::table::{Table, Value};
use super::topic::TopicTrie;

/// The routing algorithm of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Exact routing-key match.
    Direct,
    /// Every bound destination.
    Fanout,
    /// Dot-separated patterns with `*` and `#`.
    Topic,
    /// Matches message headers against binding arguments (`x-match`).
    Headers,
}

impl ExchangeKind {
    /// Parses an exchange type name as clients send it.
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        match name {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    /// The type name as clients send it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A queue.
    Queue(Arc<Queue>),
    /// Another exchange (exchange-to-exchange binding).
    Exchange(Arc<Exchange>),
}

impl PartialEq for Destination {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One binding from an exchange to a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// Where matching messages go.
    pub destination: Destination,
    /// The binding key (pattern for topic exchanges).
    pub routing_key: String,
    /// Binding arguments (what headers exchanges match on).
    pub arguments: Table,
}

/// A declared exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Its name ("" for the default exchange).
    pub name: String,
    /// Its routing algorithm.
    pub kind: ExchangeKind,
    /// Whether it survives a restart.
    pub durable: bool,
    /// Whether it is deleted when its last binding goes.
    pub auto_delete: bool,
    /// Whether clients may not publish to it directly.
    pub internal: bool,
    /// Declare arguments (e.g. `alternate-exchange`).
    pub arguments: Table,
    deleted: AtomicBool,
    routing: RwLock<Routing>,
    /// The effective policy (set by the vhost when policies or the exchange change).
    policy: parking_lot::Mutex<Option<Arc<crate::core::policy::Policy>>>,
}

#[derive(Debug, Default)]
struct Routing {
    /// Every binding, for listing, unbinding and equality checks.
    bindings: Vec<Binding>,
    direct: crate::core::FastMap<String, Vec<Destination>>,
    topic: TopicTrie<Destination>,
}

/// Where a routing walk collects its targets; deduplicated so a message reaches a queue once
/// however many bindings lead there.
#[derive(Debug, Default)]
pub struct RouteTargets {
    /// Queues the message goes to.
    pub queues: Vec<Arc<Queue>>,
    /// A queue the last publish found congested (see [`Queue::congested`]); the publishing
    /// listener takes it and pauses reading until it drains.
    pub congested: Option<Arc<Queue>>,
    /// Addresses of the exchanges already walked (identities only), to stop binding cycles.
    exchanges_seen: Vec<usize>,
}

impl RouteTargets {
    /// Empties the collection for reuse.
    pub fn clear(&mut self) {
        self.queues.clear();
        self.exchanges_seen.clear();
    }

    fn add_queue(&mut self, queue: &Arc<Queue>) {
        if !self.queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
            self.queues.push(queue.clone());
        }
    }
}

impl Exchange {
    /// Creates an exchange with no bindings.
    pub fn new(
        name: String,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Table,
    ) -> Exchange {
        Exchange {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            deleted: AtomicBool::new(false),
            routing: RwLock::new(Routing::default()),
            policy: parking_lot::Mutex::new(None),
        }
    }

    /// The effective policy, if one matches.
    pub fn policy(&self) -> Option<Arc<crate::core::policy::Policy>> {
        self.policy.lock().clone()
    }

    /// Sets the effective policy.
    pub fn set_policy(&self, policy: Option<Arc<crate::core::policy::Policy>>) {
        *self.policy.lock() = policy;
    }

    /// Whether the exchange has been deleted (holders of an `Arc` may outlive it).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Adds a binding; returns false if an identical one already existed.
    pub fn bind(&self, binding: Binding) -> bool {
        let mut routing = self.routing.write();
        if routing.bindings.contains(&binding) {
            return false;
        }
        match self.kind {
            ExchangeKind::Direct => {
                let targets = routing
                    .direct
                    .entry(binding.routing_key.clone())
                    .or_default();
                if !targets.contains(&binding.destination) {
                    targets.push(binding.destination.clone());
                }
            }
            ExchangeKind::Topic => routing
                .topic
                .insert(&binding.routing_key, binding.destination.clone()),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        routing.bindings.push(binding);
        true
    }

    /// Removes a binding; returns false if there was none.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut routing = self.routing.write();
        let Some(position) = routing.bindings.iter().position(|b| b == binding) else {
            return false;
        };
        routing.bindings.remove(position);
        Self::forget_key(&mut routing, self.kind, binding);
        true
    }

    /// Removes every binding to `destination`; returns how many bindings remain.
    pub fn unbind_destination(&self, destination: &Destination) -> usize {
        let mut routing = self.routing.write();
        let removed: Vec<Binding> = routing
            .bindings
            .iter()
            .filter(|b| b.destination == *destination)
            .cloned()
            .collect();
        routing.bindings.retain(|b| b.destination != *destination);
        for binding in &removed {
            Self::forget_key(&mut routing, self.kind, binding);
        }
        routing.bindings.len()
    }

    fn forget_key(routing: &mut Routing, kind: ExchangeKind, binding: &Binding) {
        // Another binding may still lead to the same destination with the same key but other
        // arguments; only drop the index entry when none does.
        let still_bound = routing
            .bindings
            .iter()
            .any(|b| b.destination == binding.destination && b.routing_key == binding.routing_key);
        if still_bound {
            return;
        }
        match kind {
            ExchangeKind::Direct => {
                if let Some(targets) = routing.direct.get_mut(&binding.routing_key) {
                    targets.retain(|d| *d != binding.destination);
                    if targets.is_empty() {
                        routing.direct.remove(&binding.routing_key);
                    }
                }
            }
            ExchangeKind::Topic => routing
                .topic
                .remove(&binding.routing_key, &binding.destination),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
    }

    /// How many bindings have this exchange as their source.
    pub fn binding_count(&self) -> usize {
        self.routing.read().bindings.len()
    }

    /// A snapshot of the bindings whose source is this exchange.
    pub fn bindings(&self) -> Vec<Binding> {
        self.routing.read().bindings.clone()
    }

    /// Collects the queues a message with `routing_key` and `headers` reaches through this
    /// exchange, following exchange-to-exchange bindings (each exchange visited once).
    pub fn route(&self, routing_key: &str, headers: Option<&Table>, targets: &mut RouteTargets) {
        let me = self as *const Exchange as usize;
        if targets.exchanges_seen.contains(&me) {
            return;
        }
        targets.exchanges_seen.push(me);
        let routing = self.routing.read();
        let mut visit = |destination: &Destination| match destination {
            Destination::Queue(queue) => targets.add_queue(queue),
            Destination::Exchange(exchange) => {
                if !exchange.is_deleted() {
                    exchange.route(routing_key, headers, targets)
                }
            }
        };
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(destinations) = routing.direct.get(routing_key) {
                    destinations.iter().for_each(&mut visit);
                }
            }
            ExchangeKind::Fanout => routing.bindings.iter().for_each(|b| visit(&b.destination)),
            ExchangeKind::Topic => routing.topic.for_each_match(routing_key, &mut visit),
            ExchangeKind::Headers => {
                for binding in &routing.bindings {
                    if headers_match(&binding.arguments, headers) {
                        visit(&binding.destination);
                    }
                }
            }
        }
    }
}

/// RabbitMQ's headers-exchange rule: `x-match` = `all` (default) / `any` compare every binding
/// argument not starting with `x-`; `all-with-x` / `any-with-x` compare those too. A binding
/// argument of type void matches on the header's presence alone.
pub fn headers_match(arguments: &Table, headers: Option<&Table>) -> bool {
    let mode = arguments.get_str("x-match").unwrap_or("all");
    let (any, with_x) = match mode {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let empty = Table::default();
    let headers = headers.unwrap_or(&empty);
    let mut considered = arguments
        .iter()
        .filter(|(key, _)| key != "x-match" && (with_x || !key.starts_with("x-")))
        .peekable();
    if considered.peek().is_none() {
        // No criteria: `all` matches everything, `any` nothing (as RabbitMQ).
        return !any;
    }
    let hit = |(key, expected): &(String, Value)| match headers.get(key) {
        None => false,
        Some(actual) => matches!(expected, Value::Void) || actual == expected,
    };
    if any {
        considered.any(hit)
    } else {
        considered.all(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(entries: &[(&str, &str)]) -> Table {
        Table(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(Bytes::from(v.to_string()))))
                .collect(),
        )
    }

    #[test]
    fn headers_all_and_any() {
        let all = table(&[("x-match", "all"), ("a", "1"), ("b", "2")]);
        let any = table(&[("x-match", "any"), ("a", "1"), ("b", "2")]);
        let both = table(&[("a", "1"), ("b", "2")]);
        let one = table(&[("a", "1")]);
        assert!(headers_match(&all, Some(&both)));
        assert!(!headers_match(&all, Some(&one)));
        assert!(headers_match(&any, Some(&one)));
        assert!(!headers_match(&any, None));
    }

    #[test]
    fn headers_with_x() {
        let plain = table(&[("x-match", "all"), ("x-tag", "t")]);
        let with_x = table(&[("x-match", "all-with-x"), ("x-tag", "t")]);
        let message = table(&[("x-tag", "u")]);
        assert!(headers_match(&plain, Some(&message)));
        assert!(!headers_match(&with_x, Some(&message)));
        let any_with_x = table(&[("x-match", "any-with-x"), ("x-tag", "u")]);
        assert!(headers_match(&any_with_x, Some(&message)));
    }
}
