//! The AMQP 0-9-1 listener: accepts connections and runs one task per connection that
//! translates between frames (via the sans-IO `warren-amqp` codec) and the routing core.
//!
//! - `connection`: socket I/O, handshake, heartbeats, frame dispatch, consumer events.
//! - `channel`: per-channel state, channel open/close, method dispatch, tx.
//! - `publish`: publish assembly (method + header + body), routing, publisher confirms.
//! - `delivery`: consumers, deliveries, basic.get, acknowledgements, recovery.
//! - `translate`: AMQP types ↔ core types and core errors → reply codes.

mod channel;
mod connection;
mod delivery;
mod publish;
mod translate;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::Core;

/// Largest message body accepted, as RabbitMQ's default `max_message_size` (128 MiB).
pub const MAX_MESSAGE_SIZE: u64 = 128 * 1024 * 1024;

/// Protocol parameters every AMQP connection starts from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Heartbeat proposed in connection.tune (seconds; 0 = off).
    pub heartbeat_secs: u16,
    /// frame_max proposed in connection.tune.
    pub frame_max: u32,
    /// channel_max proposed in connection.tune.
    pub channel_max: u16,
    /// How long a client may take to complete the handshake.
    pub handshake_timeout: Duration,
}

impl Settings {
    /// Takes the protocol parameters from the broker configuration.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            heartbeat_secs: config.heartbeat_secs,
            frame_max: config.frame_max.max(warren_amqp::constants::FRAME_MIN_SIZE),
            channel_max: config.channel_max,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts AMQP connections until `shutdown` fires; each connection runs as a tracked task.
pub async fn accept_loop(
    listener: TcpListener,
    core: Arc<Core>,
    settings: Settings,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let core = core.clone();
                let settings = settings.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    connection::serve(stream, peer, core, settings, shutdown).await;
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "AMQP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
