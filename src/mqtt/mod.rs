//! The MQTT 3.1.1 / 5.0 listener. MQTT is not bridged: an MQTT PUBLISH is routed by the
//! same core through the vhost's `amq.topic` exchange, and each session's subscriptions are
//! bindings from that exchange to the session's queue (SPEC §5).
//!
//! - `connection`: the per-connection task (CONNECT, the run loop, keepalive, teardown).
//! - `inbound`: PUBLISH from the client, its QoS 1/2 acknowledgements, retain and routing.
//! - `subscriptions`: SUBSCRIBE/UNSUBSCRIBE, the session queue and shared subscriptions.
//! - `outbound`: delivery to the client (QoS, packet ids, topic aliases, window grants).
//! - `session`: session state that outlives connections, and client take-over.
//! - `retained`: retained messages.
//! - `persist`: saving sessions and retained messages across restarts.
//! - `translate`: topics ↔ routing keys, PUBLISH properties ↔ message properties.

mod connection;
mod inbound;
mod outbound;
mod persist;
mod retained;
mod session;
mod subscriptions;
mod translate;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
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
            connect_timeout: Duration::from_secs(10),
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
    ) -> Mqtt {
        let shared = Arc::new(Shared {
            core,
            settings,
            sessions: session::Sessions::default(),
            retained: retained::RetainedStore::default(),
            persistence: persist::Persistence::default(),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
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

    /// Accepts MQTT connections on `listener` until shutdown.
    pub fn serve(&self, listener: TcpListener) {
        let shared = self.shared.clone();
        self.shared.tasks.spawn(accept_loop(listener, shared));
    }

    /// Saves sessions and retained messages now (at shutdown, after connections ended).
    pub fn save(&self) {
        if let Some(store) = self.shared.core.store() {
            self.shared.persistence.save(store, &self.shared.retained);
        }
    }
}

/// Accepts MQTT connections until shutdown.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.shutdown.cancelled() => {
                shared.sessions.kick_all();
                return;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared2 = shared.clone();
                shared.tasks.spawn(async move {
                    connection::serve(stream, peer, shared2).await;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
