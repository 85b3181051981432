//! The MQTT 3.1.1 / 5.0 listener. MQTT is not bridged: an MQTT PUBLISH is routed by the
//! same core through the vhost's `amq.topic` exchange, and each session's subscriptions are
//! bindings from that exchange to the session's queue.
//!
//! - `connection`: CONNECT and login, then the session state machine (packet dispatch,
//!   keep-alive, teardown, will and expiry scheduling) that [`crate::listener::Link`] drives
//!   over any transport (TCP, TLS, WebSocket).
//! - `inbound`: PUBLISH from the client, its QoS 1/2 acknowledgements, retain and routing.
//! - `subscriptions`: SUBSCRIBE/UNSUBSCRIBE, the session queue and shared subscriptions.
//! - `outbound`: delivery to the client (QoS, packet ids, topic aliases, window grants).
//! - `session`: session state that outlives connections, and client take-over.
//! - `retained`: retained messages.
//! - `routing`: MQTT-originated messages (publishes, wills) into the core.
//! - `persist`: saving sessions and retained messages across restarts.
//! - `translate`: topics ↔ routing keys, PUBLISH properties ↔ message properties.

mod connection;
mod inbound;
mod outbound;
mod persist;
mod retained;
mod routing;
mod session;
mod subscriptions;
mod translate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::Core;

/// MQTT protocol parameters.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Exchange MQTT topics map onto (RabbitMQ's `mqtt.exchange`).
    pub exchange: String,
    /// Largest packet accepted from clients (and announced to v5 clients).
    pub max_packet_size: u32,
    /// QoS 1/2 publishes a client may have unacknowledged towards the broker (v5 Receive
    /// Maximum announced in CONNACK).
    pub receive_maximum: u16,
    /// Deliveries the broker keeps in flight towards one client at most.
    pub max_inflight: u16,
    /// Topic aliases a v5 client may use towards the broker.
    pub topic_alias_maximum: u16,
    /// How long a client may take to send CONNECT.
    pub connect_timeout: Duration,
    /// A client with a verified TLS certificate and no user name logs in as the
    /// certificate's CN (RabbitMQ's `mqtt.ssl_cert_login`).
    pub ssl_cert_login: bool,
    /// Clients without credentials log in as [`Settings::default_user`]
    /// (`mqtt.allow_anonymous`); otherwise they are refused.
    pub allow_anonymous: bool,
    /// The user and password anonymous clients log in with (`mqtt.default_user`,
    /// `mqtt.default_pass`).
    pub default_user: String,
    /// See [`Settings::default_user`].
    pub default_pass: String,
    /// The vhost of clients whose user name does not name one (`mqtt.vhost`).
    pub vhost: String,
}

impl Settings {
    /// Takes the MQTT parameters from the broker configuration.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            exchange: config.mqtt_exchange.clone(),
            max_packet_size: config.mqtt_max_packet_size,
            receive_maximum: 1024,
            max_inflight: 256,
            topic_alias_maximum: 64,
            connect_timeout: config.handshake_timeout,
            ssl_cert_login: config.mqtt_ssl_cert_login,
            allow_anonymous: config.mqtt_allow_anonymous,
            default_user: config.mqtt_default_user.clone(),
            default_pass: config.mqtt_default_pass.clone(),
            vhost: config.mqtt_vhost.clone(),
        }
    }
}

/// State every MQTT connection shares.
pub(crate) struct Shared {
    pub(crate) core: Arc<Core>,
    pub(crate) settings: Settings,
    pub(crate) sessions: session::Sessions,
    pub(crate) retained: retained::RetainedStore,
    pub(crate) persistence: persist::Persistence,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// The metrics registry (wills published).
    pub(crate) stats: Arc<crate::stats::Registry>,
    /// Topics published to lately, for the management UI's topic tree.
    pub(crate) recent_topics: RecentTopics,
}

/// Topics MQTT clients published to lately, by (vhost, routing key), with when they were last
/// heard of: what the management UI draws its topic tree of recent traffic from. Bounded: past
/// [`RecentTopics::CAPACITY`] topics, the older half is forgotten.
#[derive(Debug, Default)]
pub(crate) struct RecentTopics(parking_lot::Mutex<HashMap<(String, String), std::time::Instant>>);

impl RecentTopics {
    /// Most topics remembered.
    const CAPACITY: usize = 2000;

    /// Notes a publish to `routing_key` in `vhost`.
    fn note(&self, vhost: &str, routing_key: &str) {
        let now = std::time::Instant::now();
        let mut topics = self.0.lock();
        if let Some(seen) = topics.get_mut(&(vhost.to_string(), routing_key.to_string())) {
            *seen = now;
            return;
        }
        if topics.len() >= Self::CAPACITY {
            let mut seen: Vec<std::time::Instant> = topics.values().copied().collect();
            let middle = seen.len() / 2;
            let (_, cut, _) = seen.select_nth_unstable(middle);
            let cut = *cut;
            topics.retain(|_, at| *at > cut);
        }
        topics.insert((vhost.to_string(), routing_key.to_string()), now);
    }

    /// The topics (MQTT form) of `vhost`-filtered traffic, newest first, with seconds since
    /// each was last published to.
    pub(crate) fn list(&self) -> Vec<(String, String, f64)> {
        let mut list: Vec<(String, String, f64)> = self
            .0
            .lock()
            .iter()
            .map(|((vhost, key), at)| {
                (
                    vhost.clone(),
                    translate::routing_key_to_topic(key),
                    at.elapsed().as_secs_f64(),
                )
            })
            .collect();
        list.sort_by(|a, b| a.2.total_cmp(&b.2));
        list
    }
}

/// What the MQTT side holds outside connections, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttMetrics {
    /// Persistent sessions whose client is not connected.
    pub offline_sessions: u64,
    /// Their subscriptions.
    pub offline_subscriptions: u64,
    /// Retained messages.
    pub retained_messages: u64,
    /// Their body bytes.
    pub retained_bytes: u64,
}

/// The MQTT side of the broker: session registry, retained messages, and the listener.
pub struct Mqtt {
    shared: Arc<Shared>,
}

impl Mqtt {
    /// Creates the MQTT state, restoring persistent sessions and retained messages from the
    /// core's store, and starts the task that saves them as they change.
    pub fn new(
        core: Arc<Core>,
        settings: Settings,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        stats: Arc<crate::stats::Registry>,
    ) -> Mqtt {
        let shared = Arc::new(Shared {
            stats,
            recent_topics: RecentTopics::default(),
            core,
            settings,
            sessions: session::Sessions::default(),
            retained: retained::RetainedStore::default(),
            persistence: persist::Persistence::default(),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        });
        // Shutdown ends every MQTT connection through its kick (the same wait that
        // take-over uses), so idle connections hold no shutdown future of their own.
        let kicker = shared.clone();
        tasks.spawn(async move {
            kicker.shutdown.cancelled().await;
            kicker.sessions.kick_all();
        });
        if let Some(store) = shared.core.store().cloned() {
            let loaded = shared.persistence.load(&store, &shared.retained);
            for session in loaded {
                let expiry = session.state.expiry;
                let generation = shared.sessions.insert_dormant(
                    &session.vhost,
                    &session.client_id,
                    session.state,
                );
                if let (Some(expiry), Some(vhost)) = (expiry, shared.core.vhost(&session.vhost)) {
                    connection::schedule_expiry(
                        &shared,
                        vhost,
                        session.client_id,
                        generation,
                        expiry,
                    );
                }
            }
            let saver = shared.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = saver.persistence.changed() => {}
                        _ = saver.shutdown.cancelled() => return,
                    }
                    let store = store.clone();
                    let state = saver.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        state.persistence.save(&store, &state.retained)
                    })
                    .await;
                }
            });
        }
        Mqtt { shared }
    }

    /// What the MQTT side holds outside connections, for the metrics.
    pub fn metrics(&self) -> MqttMetrics {
        self.shared.metrics()
    }

    /// The state connections share, for [`serve`] and the metrics.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Shared {
    /// What the MQTT side holds outside connections, for the metrics.
    pub(crate) fn metrics(&self) -> MqttMetrics {
        let offline = self.sessions.offline();
        let (retained_messages, retained_bytes) = self.retained.summary();
        MqttMetrics {
            offline_sessions: offline.sessions,
            offline_subscriptions: offline.subscriptions,
            retained_messages,
            retained_bytes,
        }
    }
}

impl Mqtt {
    /// Saves sessions and retained messages now (at shutdown, after connections ended).
    pub fn save(&self) {
        if let Some(store) = self.shared.core.store() {
            self.shared.persistence.save(store, &self.shared.retained);
        }
    }
}

/// One MQTT session as the management API lists it.
#[derive(Debug, Clone)]
pub(crate) struct SessionSummary {
    /// Its vhost.
    pub(crate) vhost: String,
    /// Its client id.
    pub(crate) client_id: String,
    /// Whether its client is connected.
    pub(crate) online: bool,
    /// Its subscriptions' topic filters with their QoS: from the session's record when it is
    /// offline; while online, from its queues' bindings to the MQTT exchange, with the QoS of
    /// the queue (0 or 1).
    pub(crate) subscriptions: Vec<(String, u8)>,
    /// Messages waiting in its queues (ready and unacknowledged).
    pub(crate) queued: u64,
}

impl Shared {
    /// Every session, online and offline, with its subscriptions and queued messages.
    pub(crate) fn session_summaries(&self) -> Vec<SessionSummary> {
        // Each vhost's MQTT bindings are read once, by queue, not once per session.
        let mut filters_by_vhost: HashMap<String, HashMap<usize, Vec<String>>> = HashMap::new();
        let mut summaries = Vec::new();
        for (vhost_name, client_id, online, stored) in self.sessions.list() {
            let mut summary = SessionSummary {
                vhost: vhost_name.clone(),
                client_id: client_id.clone(),
                online,
                subscriptions: Vec::new(),
                queued: 0,
            };
            if let Some(vhost) = self.core.vhost(&vhost_name) {
                let filters = filters_by_vhost
                    .entry(vhost_name.clone())
                    .or_insert_with(|| self.filters_by_queue(&vhost));
                for (qos, persistent) in [(0u8, false), (1u8, true)] {
                    let name = connection::session_queue_name(&client_id, persistent);
                    let Some(queue) = vhost.find_queue(&name) else {
                        continue;
                    };
                    let counts = queue.counts();
                    summary.queued += u64::from(counts.ready) + u64::from(counts.unacked);
                    let key = Arc::as_ptr(&queue) as usize;
                    for filter in filters.get(&key).into_iter().flatten() {
                        summary.subscriptions.push((filter.clone(), qos));
                    }
                }
            }
            // An offline session's own record has each subscription's granted QoS (its queues
            // only say which queue a filter feeds).
            if let Some(stored) = stored {
                summary.subscriptions = stored;
            }
            summary.subscriptions.sort();
            summaries.push(summary);
        }
        summaries.sort_by(|a, b| (&a.vhost, &a.client_id).cmp(&(&b.vhost, &b.client_id)));
        summaries
    }

    /// The MQTT topic filters bound to each queue of `vhost` through the MQTT exchange, by the
    /// queue's address.
    fn filters_by_queue(&self, vhost: &crate::core::Vhost) -> HashMap<usize, Vec<String>> {
        let mut filters: HashMap<usize, Vec<String>> = HashMap::new();
        let Ok(exchange) = vhost.exchange(&self.settings.exchange) else {
            return filters;
        };
        for binding in exchange.bindings() {
            if let crate::core::exchange::Destination::Queue(queue) = &binding.destination {
                filters
                    .entry(Arc::as_ptr(queue) as usize)
                    .or_default()
                    .push(translate::routing_key_to_topic(&binding.routing_key));
            }
        }
        filters
    }

    /// Every retained message as (vhost, topic, QoS, body).
    pub(crate) fn retained_messages(&self) -> Vec<(String, String, u8, bytes::Bytes)> {
        let mut entries: Vec<(String, String, u8, bytes::Bytes)> = self
            .retained
            .entries()
            .into_iter()
            .map(|(vhost, topic, retained)| {
                (
                    vhost,
                    topic,
                    retained.qos as u8,
                    retained.message.body.clone(),
                )
            })
            .collect();
        entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        entries
    }
}

/// Serves one accepted connection (any transport: TCP, TLS, WebSocket) until it closes.
pub(crate) fn serve(
    accepted: crate::listener::Accepted,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send {
    // Not an `async fn` wrapper: that would keep its own copy of the arguments in every
    // idle connection's task.
    connection::serve(accepted, shared)
}
