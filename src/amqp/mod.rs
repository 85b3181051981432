//! The AMQP 0-9-1 listener: accepts connections and runs one task per connection that
//! translates between frames (via the sans-IO `warren-amqp` codec) and the routing core.
//!
//! - `connection`: the handshake, then the session state machine (frame dispatch,
//!   heartbeats, consumer events) that [`crate::listener::Link`] drives over any transport.
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

use tokio_util::sync::CancellationToken;

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
            handshake_timeout: config.handshake_timeout,
        }
    }
}

/// Serves one accepted connection (any transport) until it closes.
pub(crate) fn serve(
    accepted: crate::listener::Accepted,
    core: Arc<Core>,
    settings: Settings,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send {
    // Not an `async fn` wrapper: that would keep its own copy of the arguments in every
    // idle connection's task.
    connection::serve(accepted, core, settings, shutdown)
}
