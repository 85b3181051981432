//! The Prometheus endpoint (port 15692), laid out as RabbitMQ's `rabbitmq_prometheus`:
//! `/metrics` (aggregated), `/metrics/per-object` and `/metrics/detailed?family=…&vhost=…`.
//!
//! A scrape reads what the broker already counts: the connection registry
//! ([`crate::stats`]), the queues' counters, the store's and the MQTT side's. Nothing is
//! counted for the endpoint's sake on the message path.

mod families;
mod node;
mod render;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::stats::{MessageTotals, Protocol, Registry, MESSAGE_SIZE_BUCKETS};
use crate::store::{Store, FSYNC_BUCKETS};
use families as f;
pub(crate) use node::{disk_free, process, NodeIdentity};
use render::{HistogramSeries, Output, View};

/// What a scrape reads.
pub(crate) struct Exporter {
    pub(crate) core: Arc<Core>,
    pub(crate) stats: Arc<Registry>,
    pub(crate) store: Arc<Store>,
    pub(crate) mqtt: Arc<crate::mqtt::Shared>,
    pub(crate) identity: NodeIdentity,
    /// Connections allowed at most (`--max-connections`).
    pub(crate) max_connections: usize,
    pub(crate) started: Instant,
    pub(crate) started_unix: f64,
}

/// Serves the endpoint on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .with_state(exporter);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "Prometheus listener failed");
    }
}

async fn aggregated(State(exporter): State<Arc<Exporter>>) -> Response {
    scrape(exporter, View::Aggregated).await
}

async fn per_object(State(exporter): State<Arc<Exporter>>) -> Response {
    scrape(exporter, View::PerObject).await
}

async fn detailed(State(exporter): State<Arc<Exporter>>, RawQuery(query): RawQuery) -> Response {
    let mut groups = Vec::new();
    let mut vhosts = Vec::new();
    for (key, value) in form_pairs(query.as_deref().unwrap_or("")) {
        match key.as_str() {
            "family" => groups.push(value),
            "vhost" => vhosts.push(value),
            _ => {}
        }
    }
    scrape(exporter, View::Detailed { groups, vhosts }).await
}

/// Collects and renders on a blocking thread: a scrape of many queues takes milliseconds
/// that the connection tasks should not wait for.
async fn scrape(exporter: Arc<Exporter>, view: View) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let mut output = Output::new(view);
        exporter.collect(&mut output);
        output.render()
    })
    .await;
    match rendered {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "metrics scrape failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Splits an `application/x-www-form-urlencoded` query into decoded pairs.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Per-protocol totals of the live connections and channels plus what closed ones left.
struct Totals {
    messages: [MessageTotals; Protocol::ALL.len()],
    publishers: [u64; Protocol::ALL.len()],
    consumers: [u64; Protocol::ALL.len()],
    connections: [[u64; 4]; Protocol::ALL.len()],
    connection_count: u64,
    channel_count: u64,
    /// MQTT sessions online: (clean, persistent); subscriptions of online sessions.
    mqtt_online: (u64, u64),
    mqtt_subscriptions: u64,
    /// MQTT deliveries awaiting acknowledgement: (QoS 1, QoS 2).
    mqtt_in_flight: (u64, u64),
}

const TRANSPORTS: [&str; 4] = ["tcp", "tls", "ws", "wss"];

fn label(key: &'static str, value: impl Into<String>) -> Vec<(&'static str, String)> {
    vec![(key, value.into())]
}

impl Exporter {
    fn collect(&self, out: &mut Output) {
        self.collect_identity(out);
        let totals = self.collect_connections(out);
        self.collect_globals(out, &totals);
        let paged_bytes = self.collect_queues(out);
        self.collect_node(out, &totals);
        self.collect_warren(out, &totals, paged_bytes);
    }

    fn collect_identity(&self, out: &mut Output) {
        let identity = &self.identity;
        out.sample(
            &f::IDENTITY,
            vec![
                ("rabbitmq_node", identity.node.clone()),
                ("rabbitmq_cluster", identity.cluster.clone()),
                (
                    "rabbitmq_cluster_permanent_id",
                    identity.permanent_id.clone(),
                ),
                ("rabbitmq_endpoint", out.view().endpoint().to_string()),
            ],
            1.0,
        );
        out.sample(
            &f::BUILD,
            vec![
                ("rabbitmq_version", env!("CARGO_PKG_VERSION").to_string()),
                (
                    "prometheus_plugin_version",
                    env!("CARGO_PKG_VERSION").to_string(),
                ),
                (
                    "prometheus_client_version",
                    "metrics-exporter-prometheus 0.17".to_string(),
                ),
                (
                    "erlang_version",
                    "none (warren is written in Rust)".to_string(),
                ),
            ],
            1.0,
        );
        out.sample(&f::START_TIME, Vec::new(), self.started_unix);
        out.sample(&f::UPTIME, Vec::new(), self.started.elapsed().as_secs_f64());
    }

    /// Walks the connection registry: per-object connection and channel series, and the
    /// per-protocol totals the global families need.
    fn collect_connections(&self, out: &mut Output) -> Totals {
        let mut totals = Totals {
            messages: Default::default(),
            publishers: [0; Protocol::ALL.len()],
            consumers: [0; Protocol::ALL.len()],
            connections: [[0; 4]; Protocol::ALL.len()],
            connection_count: 0,
            channel_count: 0,
            mqtt_online: (0, 0),
            mqtt_subscriptions: 0,
            mqtt_in_flight: (0, 0),
        };
        for family in [
            &f::CONNECTION_INCOMING_BYTES,
            &f::CONNECTION_OUTGOING_BYTES,
            &f::CONNECTION_INCOMING_PACKETS,
            &f::CONNECTION_OUTGOING_PACKETS,
            &f::CONNECTION_CHANNELS,
            &f::CHANNEL_CONSUMERS,
            &f::CHANNEL_MESSAGES_UNACKED,
            &f::CHANNEL_MESSAGES_UNCONFIRMED,
            &f::CHANNEL_PREFETCH,
            &f::CHANNEL_PUBLISHED,
            &f::CHANNEL_CONFIRMED,
            &f::CHANNEL_RETURNED,
            &f::CHANNEL_DROPPED,
            &f::CHANNEL_GET_ACK,
            &f::CHANNEL_GET,
            &f::CHANNEL_DELIVERED_ACK,
            &f::CHANNEL_DELIVERED,
            &f::CHANNEL_REDELIVERED,
            &f::CHANNEL_ACKED,
            &f::CHANNEL_GET_EMPTY,
        ] {
            out.declare(family);
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.visit(|retired, connections| {
            totals.messages = *retired;
            for connection in connections {
                let protocol = connection.protocol();
                let index = Protocol::ALL
                    .iter()
                    .position(|p| *p == protocol)
                    .unwrap_or(0);
                totals.connection_count += 1;
                let transport = TRANSPORTS
                    .iter()
                    .position(|t| *t == connection.transport)
                    .unwrap_or(0);
                totals.connections[index][transport] += 1;
                let vhost = connection.identity().map(|identity| identity.vhost);
                let vhost = vhost.as_deref();
                let connection_name = connection.name();
                let name = || label("channel", connection_name.clone());
                out.object(
                    &f::CONNECTION_INCOMING_BYTES,
                    vhost,
                    name,
                    connection.bytes_in.get() as f64,
                );
                out.object(
                    &f::CONNECTION_OUTGOING_BYTES,
                    vhost,
                    name,
                    connection.bytes_out.get() as f64,
                );
                out.object(
                    &f::CONNECTION_INCOMING_PACKETS,
                    vhost,
                    name,
                    connection.reads.get() as f64,
                );
                out.object(
                    &f::CONNECTION_OUTGOING_PACKETS,
                    vhost,
                    name,
                    connection.writes.get() as f64,
                );
                let channels = connection.channels();
                out.object(&f::CONNECTION_CHANNELS, vhost, name, channels.len() as f64);
                // Protocols without channels count on the connection itself.
                let own = connection.message_totals();
                totals.messages[index].add(&own);
                if protocol.is_mqtt() {
                    totals.consumers[index] += u64::from(connection.consumers.load(Relaxed));
                    totals.publishers[index] += u64::from(connection.publisher.load(Relaxed));
                    let subscriptions = u64::from(connection.subscriptions.load(Relaxed));
                    totals.mqtt_subscriptions += subscriptions;
                    if connection.persistent_session.load(Relaxed) {
                        totals.mqtt_online.1 += 1;
                    } else {
                        totals.mqtt_online.0 += 1;
                    }
                    let qos2 = own.delivered_qos2.saturating_sub(own.acknowledged_qos2);
                    let qos1 = own
                        .delivered_consume_manual_ack
                        .saturating_sub(own.delivered_qos2)
                        .saturating_sub(own.acknowledged.saturating_sub(own.acknowledged_qos2));
                    totals.mqtt_in_flight.0 += qos1;
                    totals.mqtt_in_flight.1 += qos2;
                }
                for channel in channels {
                    totals.channel_count += 1;
                    let counts = channel.message_totals();
                    totals.messages[index].add(&counts);
                    totals.publishers[index] += u64::from(channel.publisher.load(Relaxed));
                    let consumers = channel.consumers.load(Relaxed);
                    totals.consumers[index] += u64::from(consumers);
                    let name = || {
                        label(
                            "channel",
                            format!("{} ({})", connection_name, channel.number),
                        )
                    };
                    let unacked = counts.unacknowledged();
                    let unconfirmed = counts.unconfirmed();
                    out.object(&f::CHANNEL_CONSUMERS, vhost, name, f64::from(consumers));
                    out.object(&f::CHANNEL_MESSAGES_UNACKED, vhost, name, unacked as f64);
                    out.object(
                        &f::CHANNEL_MESSAGES_UNCONFIRMED,
                        vhost,
                        name,
                        unconfirmed as f64,
                    );
                    out.object(
                        &f::CHANNEL_PREFETCH,
                        vhost,
                        name,
                        f64::from(channel.prefetch.load(Relaxed)),
                    );
                    out.object(&f::CHANNEL_PUBLISHED, vhost, name, counts.received() as f64);
                    out.object(&f::CHANNEL_CONFIRMED, vhost, name, counts.confirmed as f64);
                    out.object(
                        &f::CHANNEL_RETURNED,
                        vhost,
                        name,
                        counts.unroutable_returned as f64,
                    );
                    out.object(
                        &f::CHANNEL_DROPPED,
                        vhost,
                        name,
                        counts.unroutable_dropped as f64,
                    );
                    out.object(
                        &f::CHANNEL_GET_ACK,
                        vhost,
                        name,
                        counts.delivered_get_manual_ack as f64,
                    );
                    out.object(
                        &f::CHANNEL_GET,
                        vhost,
                        name,
                        counts.delivered_get_auto_ack as f64,
                    );
                    out.object(
                        &f::CHANNEL_DELIVERED_ACK,
                        vhost,
                        name,
                        counts.delivered_consume_manual_ack as f64,
                    );
                    out.object(
                        &f::CHANNEL_DELIVERED,
                        vhost,
                        name,
                        counts.delivered_consume_auto_ack as f64,
                    );
                    out.object(
                        &f::CHANNEL_REDELIVERED,
                        vhost,
                        name,
                        counts.redelivered as f64,
                    );
                    out.object(&f::CHANNEL_ACKED, vhost, name, counts.acknowledged as f64);
                    out.object(&f::CHANNEL_GET_EMPTY, vhost, name, counts.get_empty as f64);
                }
            }
        });
        totals
    }

    fn collect_globals(&self, out: &mut Output, totals: &Totals) {
        let churn = self.stats.churn();
        let mut queue_churn = crate::core::QueueChurn::default();
        for vhost in self.core.vhosts() {
            let more = vhost.queue_churn();
            queue_churn.declared += more.declared;
            queue_churn.created += more.created;
            queue_churn.deleted += more.deleted;
        }
        for (family, value) in [
            (&f::CONNECTIONS_OPENED, churn.connections_opened),
            (&f::CONNECTIONS_CLOSED, churn.connections_closed),
            (&f::CHANNELS_OPENED, churn.channels_opened),
            (&f::CHANNELS_CLOSED, churn.channels_closed),
            (&f::QUEUES_DECLARED, queue_churn.declared),
            (&f::QUEUES_CREATED, queue_churn.created),
            (&f::QUEUES_DELETED, queue_churn.deleted),
        ] {
            out.sample(family, Vec::new(), value as f64);
        }
        out.sample(&f::CONNECTIONS, Vec::new(), totals.connection_count as f64);
        out.sample(&f::CHANNELS, Vec::new(), totals.channel_count as f64);
        let mut size_series = Vec::new();
        for (index, protocol) in Protocol::ALL.iter().enumerate() {
            let m = &totals.messages[index];
            let protocol_label = || label("protocol", protocol.label());
            for (family, value) in [
                (&f::RECEIVED, m.received()),
                (&f::RECEIVED_CONFIRM, m.received_confirm),
                (&f::ROUTED, m.routed()),
                (&f::UNROUTABLE_DROPPED, m.unroutable_dropped),
                (&f::UNROUTABLE_RETURNED, m.unroutable_returned),
                (&f::CONFIRMED, m.confirmed),
                (&f::DELIVERED, m.delivered()),
                (&f::DELIVERED_CONSUME_AUTO_ACK, m.delivered_consume_auto_ack),
                (
                    &f::DELIVERED_CONSUME_MANUAL_ACK,
                    m.delivered_consume_manual_ack,
                ),
                (&f::DELIVERED_GET_AUTO_ACK, m.delivered_get_auto_ack),
                (&f::DELIVERED_GET_MANUAL_ACK, m.delivered_get_manual_ack),
                (&f::GET_EMPTY, m.get_empty),
                (&f::REDELIVERED, m.redelivered),
                (&f::ACKNOWLEDGED, m.acknowledged),
            ] {
                out.sample(family, protocol_label(), value as f64);
            }
            out.sample(
                &f::PUBLISHERS,
                protocol_label(),
                totals.publishers[index] as f64,
            );
            out.sample(
                &f::GLOBAL_CONSUMERS,
                protocol_label(),
                totals.consumers[index] as f64,
            );
            let events = self.stats.protocol_events(*protocol);
            let attempts = events.auth_succeeded + events.auth_failed;
            out.summed(&f::AUTH_ATTEMPTS, protocol_label(), attempts as f64);
            out.summed(
                &f::AUTH_SUCCEEDED,
                protocol_label(),
                events.auth_succeeded as f64,
            );
            out.summed(&f::AUTH_FAILED, protocol_label(), events.auth_failed as f64);
            const BOUNDS: [&str; MESSAGE_SIZE_BUCKETS.len() + 1] = [
                "100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08",
                "+Inf",
            ];
            size_series.push(HistogramSeries {
                labels: protocol_label(),
                buckets: BOUNDS.iter().copied().zip(m.received_by_size).collect(),
                sum: m.received_bytes as f64,
            });
        }
        // warren dead-letters nothing yet: these stay at zero, present because dashboards
        // and alerts written for RabbitMQ query them.
        for family in [
            &f::DEAD_LETTERED_CONFIRMED,
            &f::DEAD_LETTERED_DELIVERY_LIMIT,
            &f::DEAD_LETTERED_EXPIRED,
            &f::DEAD_LETTERED_MAXLEN,
            &f::DEAD_LETTERED_REJECTED,
        ] {
            out.sample(
                family,
                vec![
                    ("queue_type", "rabbit_classic_queue".to_string()),
                    ("dead_letter_strategy", "disabled".to_string()),
                ],
                0.0,
            );
        }
        out.histogram(&f::MESSAGE_SIZE, size_series);
    }

    /// Queue, exchange and vhost families; returns the bytes paged out over all queues.
    fn collect_queues(&self, out: &mut Output) -> u64 {
        let detailed_groups = match out.view() {
            View::Detailed { groups, .. } => groups.clone(),
            _ => Vec::new(),
        };
        // Both groups carry `queue_consumers`: render it once.
        let metrics_consumers = !detailed_groups.is_empty()
            && !detailed_groups.iter().any(|g| g == "queue_consumer_count");
        let families = [
            &f::QUEUE_MESSAGES_READY,
            &f::QUEUE_MESSAGES_UNACKED,
            &f::QUEUE_MESSAGES,
            &f::QUEUE_CONSUMER_COUNT,
            &f::QUEUE_MESSAGES_BYTES,
            &f::QUEUE_MESSAGES_READY_BYTES,
            &f::QUEUE_MESSAGES_UNACKED_BYTES,
            &f::QUEUE_MESSAGES_RAM,
            &f::QUEUE_MESSAGES_RAM_BYTES,
            &f::QUEUE_MESSAGES_PAGED_OUT,
            &f::QUEUE_MESSAGES_PAGED_OUT_BYTES,
            &f::QUEUE_MESSAGES_PERSISTENT,
            &f::QUEUE_MESSAGES_PUBLISHED,
        ];
        for family in families {
            out.declare(family);
        }
        if metrics_consumers {
            out.declare(&f::QUEUE_METRICS_CONSUMERS);
        }
        for family in [&f::EXCHANGE_NAME, &f::EXCHANGE_BINDINGS, &f::VHOST_STATUS] {
            out.declare(family);
        }
        let mut queue_count = 0u64;
        let mut paged_bytes = 0u64;
        let mut consumer_count = 0u64;
        for vhost in self.core.vhosts() {
            let name = vhost.name.as_str();
            out.object(&f::VHOST_STATUS, Some(name), || label("vhost", name), 1.0);
            if out.wants(&f::EXCHANGE_NAME) || out.wants(&f::EXCHANGE_BINDINGS) {
                for exchange in vhost.exchanges() {
                    let labels = || {
                        vec![
                            ("vhost", name.to_string()),
                            ("exchange", exchange.name.to_string()),
                            ("type", exchange.kind.as_str().to_string()),
                        ]
                    };
                    out.object(&f::EXCHANGE_NAME, Some(name), labels, 1.0);
                    out.object(
                        &f::EXCHANGE_BINDINGS,
                        Some(name),
                        labels,
                        exchange.binding_count() as f64,
                    );
                }
            }
            for queue in vhost.queues() {
                let metrics = queue.metrics();
                paged_bytes += metrics.paged_bytes;
                let counts = metrics.counts;
                queue_count += 1;
                consumer_count += u64::from(counts.consumers);
                let labels = || vec![("vhost", name.to_string()), ("queue", queue.name.clone())];
                let ready = f64::from(counts.ready);
                let unacked = f64::from(counts.unacked);
                let ready_bytes = metrics.bytes.saturating_sub(metrics.unacked_bytes);
                let in_memory = u64::from(counts.ready)
                    .saturating_add(u64::from(counts.unacked))
                    .saturating_sub(metrics.paged);
                for (family, value) in [
                    (&f::QUEUE_MESSAGES_READY, ready),
                    (&f::QUEUE_MESSAGES_UNACKED, unacked),
                    (&f::QUEUE_MESSAGES, ready + unacked),
                    (&f::QUEUE_CONSUMER_COUNT, f64::from(counts.consumers)),
                    (&f::QUEUE_MESSAGES_BYTES, metrics.bytes as f64),
                    (&f::QUEUE_MESSAGES_READY_BYTES, ready_bytes as f64),
                    (
                        &f::QUEUE_MESSAGES_UNACKED_BYTES,
                        metrics.unacked_bytes as f64,
                    ),
                    (&f::QUEUE_MESSAGES_RAM, in_memory as f64),
                    (
                        &f::QUEUE_MESSAGES_RAM_BYTES,
                        metrics.bytes.saturating_sub(metrics.paged_bytes) as f64,
                    ),
                    (&f::QUEUE_MESSAGES_PAGED_OUT, metrics.paged as f64),
                    (
                        &f::QUEUE_MESSAGES_PAGED_OUT_BYTES,
                        metrics.paged_bytes as f64,
                    ),
                    (&f::QUEUE_MESSAGES_PERSISTENT, metrics.persistent as f64),
                    (&f::QUEUE_MESSAGES_PUBLISHED, metrics.published as f64),
                ] {
                    out.object(family, Some(name), labels, value);
                }
                if metrics_consumers {
                    out.object(
                        &f::QUEUE_METRICS_CONSUMERS,
                        Some(name),
                        labels,
                        f64::from(counts.consumers),
                    );
                }
            }
        }
        out.sample(&f::QUEUES, Vec::new(), queue_count as f64);
        out.sample(&f::CONSUMERS, Vec::new(), consumer_count as f64);
        paged_bytes
    }

    fn collect_node(&self, out: &mut Output, totals: &Totals) {
        let process = node::process();
        let disk_free = node::disk_free(self.store.dir());
        let memory = self.core.memory();
        let limit_fds = process.max_fds;
        let max_sockets = (self.max_connections as u64).min(limit_fds.unwrap_or(u64::MAX));
        let optional = |value: Option<u64>| value.map_or(f64::NAN, |v| v as f64);
        out.sample(&f::OPEN_FDS, Vec::new(), optional(process.open_fds));
        out.sample(
            &f::OPEN_TCP_SOCKETS,
            Vec::new(),
            totals.connection_count as f64,
        );
        out.sample(
            &f::RESIDENT_MEMORY,
            Vec::new(),
            optional(process.resident_bytes),
        );
        out.sample(&f::DISK_AVAILABLE, Vec::new(), optional(disk_free));
        out.sample(&f::MAX_FDS, Vec::new(), optional(limit_fds));
        out.sample(&f::MAX_TCP_SOCKETS, Vec::new(), max_sockets as f64);
        out.sample(&f::MEMORY_LIMIT, Vec::new(), memory.limit() as f64);
        let disk_free_limit = self.core.disk().limit();
        out.sample(&f::DISK_LIMIT, Vec::new(), disk_free_limit as f64);
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        out.sample(&f::ALARM_MEMORY, Vec::new(), flag(memory.over_limit()));
        out.sample(
            &f::ALARM_DISK,
            Vec::new(),
            flag(disk_free.is_some_and(|free| free < disk_free_limit)),
        );
        let fds_exhausted =
            matches!((process.open_fds, limit_fds), (Some(open), Some(max)) if open >= max);
        out.sample(&f::ALARM_FDS, Vec::new(), flag(fds_exhausted));
        let store = self.store.stats();
        out.sample(&f::IO_WRITE_OPS, Vec::new(), store.writes as f64);
        out.sample(&f::IO_WRITE_BYTES, Vec::new(), store.write_bytes as f64);
        out.sample(&f::IO_SYNC_OPS, Vec::new(), store.fsyncs() as f64);
        out.sample(&f::IO_SYNC_TIME, Vec::new(), store.fsync_seconds);
    }

    fn collect_warren(&self, out: &mut Output, totals: &Totals, paged_bytes: u64) {
        for (index, protocol) in Protocol::ALL.iter().enumerate() {
            for (transport_index, transport) in TRANSPORTS.iter().enumerate() {
                out.sample(
                    &f::W_CONNECTIONS,
                    vec![
                        ("protocol", protocol.label().to_string()),
                        ("transport", transport.to_string()),
                    ],
                    totals.connections[index][transport_index] as f64,
                );
            }
            let events = self.stats.protocol_events(*protocol);
            out.sample(
                &f::W_FLOW_PAUSES,
                label("protocol", protocol.label()),
                events.flow_pauses as f64,
            );
            if protocol.is_mqtt() {
                let m = &totals.messages[index];
                let received = [
                    m.received().saturating_sub(m.received_confirm),
                    m.received_confirm.saturating_sub(m.received_qos2),
                    m.received_qos2,
                ];
                let delivered = [
                    m.delivered_consume_auto_ack,
                    m.delivered_consume_manual_ack
                        .saturating_sub(m.delivered_qos2),
                    m.delivered_qos2,
                ];
                for qos in 0..3 {
                    let labels = || {
                        vec![
                            ("protocol", protocol.label().to_string()),
                            ("qos", qos.to_string()),
                        ]
                    };
                    out.sample(&f::W_MQTT_RECEIVED, labels(), received[qos] as f64);
                    out.sample(&f::W_MQTT_DELIVERED, labels(), delivered[qos] as f64);
                }
            }
        }
        let mqtt = self.mqtt.metrics();
        let session = |kind: &str, state: &str| {
            vec![("kind", kind.to_string()), ("state", state.to_string())]
        };
        out.sample(
            &f::W_MQTT_SESSIONS,
            session("clean", "online"),
            totals.mqtt_online.0 as f64,
        );
        out.sample(
            &f::W_MQTT_SESSIONS,
            session("persistent", "online"),
            totals.mqtt_online.1 as f64,
        );
        out.sample(&f::W_MQTT_SESSIONS, session("clean", "offline"), 0.0);
        out.sample(
            &f::W_MQTT_SESSIONS,
            session("persistent", "offline"),
            mqtt.offline_sessions as f64,
        );
        out.sample(
            &f::W_MQTT_SUBSCRIPTIONS,
            Vec::new(),
            (totals.mqtt_subscriptions + mqtt.offline_subscriptions) as f64,
        );
        out.sample(
            &f::W_MQTT_RETAINED,
            Vec::new(),
            mqtt.retained_messages as f64,
        );
        out.sample(
            &f::W_MQTT_RETAINED_BYTES,
            Vec::new(),
            mqtt.retained_bytes as f64,
        );
        out.sample(
            &f::W_MQTT_IN_FLIGHT,
            label("qos", "1"),
            totals.mqtt_in_flight.0 as f64,
        );
        out.sample(
            &f::W_MQTT_IN_FLIGHT,
            label("qos", "2"),
            totals.mqtt_in_flight.1 as f64,
        );
        out.sample(
            &f::W_MQTT_WILLS,
            Vec::new(),
            self.stats
                .mqtt_wills_published
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        );
        let store = self.store.stats();
        const FSYNC_BOUNDS: [&str; FSYNC_BUCKETS.len() + 1] = [
            "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
            "0.1", "0.25", "0.5", "1", "+Inf",
        ];
        out.histogram(
            &f::W_FSYNC,
            vec![HistogramSeries {
                labels: Vec::new(),
                buckets: FSYNC_BOUNDS
                    .iter()
                    .copied()
                    .zip(store.fsync_buckets)
                    .collect(),
                sum: store.fsync_seconds,
            }],
        );
        out.sample(&f::W_STORE_BYTES, Vec::new(), store.disk_bytes as f64);
        out.sample(&f::W_STORE_SEGMENTS, Vec::new(), store.segments as f64);
        out.sample(&f::W_PAGED_BYTES, Vec::new(), paged_bytes as f64);
        let memory = self.core.memory();
        out.sample(&f::W_MESSAGE_MEMORY, Vec::new(), memory.used() as f64);
        out.sample(
            &f::W_MESSAGE_MEMORY_LIMIT,
            Vec::new(),
            memory.limit() as f64,
        );
    }
}

/// Binds the endpoint's listener; the caller serves it with [`serve`].
pub(crate) async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_as_forms() {
        assert_eq!(
            form_pairs("family=queue_coarse_metrics&vhost=%2F&x=a+b"),
            vec![
                ("family".to_string(), "queue_coarse_metrics".to_string()),
                ("vhost".to_string(), "/".to_string()),
                ("x".to_string(), "a b".to_string()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
