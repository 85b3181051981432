//! The MQTT 3.1.1 / 5.0 listener. MQTT is not bridged: an MQTT PUBLISH is routed by the
//! same core through the vhost's `amq.topic` exchange, and each session's subscriptions are
//! bindings from that exchange to the session's queue (SPEC §5).
//!
//! - `connection`: the per-connection task (CONNECT, keepalive, QoS flows, delivery).
//! - `session`: session state that outlives connections, and client take-over.
//! - `retained`: retained messages.
//! - `translate`: topics ↔ routing keys, PUBLISH properties ↔ message properties.

mod connection;
mod retained;
mod session;
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
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

/// Accepts MQTT connections until `shutdown` fires.
pub async fn accept_loop(
    listener: TcpListener,
    core: Arc<Core>,
    settings: Settings,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let shared = Arc::new(Shared {
        core,
        settings,
        sessions: session::Sessions::default(),
        retained: retained::RetainedStore::default(),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tasks.spawn(async move {
                    connection::serve(stream, peer, shared).await;
                });
            }
            Err(error) => {
                tracing::warn!(%error, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
