//! warren: a message broker speaking AMQP 0-9-1 and MQTT 3.1.1/5.0 through one routing core.
//! This library is the broker alone; the load tool (`warren perf`, `warren relay`) is the
//! `warren-perf` crate in `tools/perf`, which only the `warren` binary uses.
//!
//! Module map and message flow:
//! - [`core`]: protocol-neutral vhosts, exchanges, bindings, queues and consumers. Listeners hand
//!   it [`core::Message`]s and receive [`core::ConsumerEvent`]s; it never sees a frame.
//! - [`store`]: durable storage (segment log, documents) and the message model it persists;
//!   the layer under the core, importing neither the core nor any protocol.
//! - [`amqp`]: the AMQP 0-9-1 listener. One task per connection decodes frames with the
//!   `warren-amqp` codec, translates methods into core calls and core deliveries into frames.
//! - [`mqtt`]: the MQTT listener over the `warren-mqtt` codec; topics map onto `amq.topic`.
//! - `listener`: the accept loop, transports (TCP, TLS, WebSocket) and the socket loop
//!   that drives either protocol's session state machine.
//! - [`tls`]: TLS settings, reloading, certificate login, and development certificates.
//! - [`stats`]: message counters per channel and connection, and the registry of live
//!   connections the Prometheus endpoint reads.
//! - `prometheus`: the metrics endpoint (15692) under RabbitMQ's names and layout.
//! - `management`: the management HTTP API (15672), RabbitMQ's paths and JSON fields.
//! - [`broker`]: wires the core and the listeners together and owns shutdown.
//! - [`config`]: what the broker needs to start.
//!
//! A publish travels: socket → `warren_amqp::decode_frame` → `amqp::channel` assembles
//! method + header + body → `core::Vhost::publish` routes through the exchange to queues →
//! each queue hands the shared message to a consumer with credit → that consumer's
//! connection task encodes `basic.deliver` and flushes once per burst.

pub mod amqp;
pub mod auth;
pub mod broker;
pub mod config;
pub mod core;
pub(crate) mod listener;
pub(crate) mod management;
pub mod mqtt;
pub(crate) mod prometheus;
pub mod stats;
pub mod store;
pub mod tls;

pub use broker::{Broker, StartError};
pub use config::Config;
