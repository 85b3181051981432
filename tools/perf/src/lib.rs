//! `warren perf`: a load generator for any AMQP 0-9-1 or MQTT 3.1.1 broker, modelled on
//! RabbitMQ PerfTest, so the same command measures warren, RabbitMQ and Mosquitto.
//!
//! # What it does
//! - **AMQP** (`--uri amqp://…`, or `amqps://…` over TLS): declares `--queues` queues named by `--queue-pattern`
//!   (`perf-%d` → `perf-0`, `perf-1`, …; durable with `--persistent`) and purges them; producer
//!   `i` publishes to queue `i % queues` through the default exchange, consumer `j` consumes
//!   queue `j % queues` (competing consumers share a queue's messages). The queues are deleted
//!   at the end unless `--keep-queues`. Queue features: `--queue-arg KEY=VALUE` declares the
//!   queues with arguments (`x-max-priority`, `x-message-ttl`, `x-dead-letter-*`, …),
//!   `--priority-spread N` publishes with priorities cycling 0..N-1, `--consume-queue NAME`
//!   has the consumers consume another queue (where the published ones dead-letter), and
//!   `--rejecters N` adds consumers that reject (requeue=false) everything on the published
//!   queues.
//! - **MQTT** (`--uri mqtt://…`; `mqtts://…` over TLS, `ws://…` / `wss://…` over WebSocket;
//!   MQTT 3.1.1, clean sessions, keep-alive off): publisher `i`
//!   publishes to topic `perf/<i % queues>` with `--qos`, subscriber `j` subscribes to
//!   `perf/<j % queues>`. Every subscriber of a topic gets every message (fan-out), so give
//!   `--queues` = `--producers` = `--consumers` for independent pairs.
//! - **mqtt-to-amqp** (`--mode mqtt-to-amqp --uri mqtt://… --amqp-uri amqp://…`): MQTT
//!   publishers to `perf/<i>`, AMQP consumers on queues `perf-<i>` bound to `amq.topic` with
//!   `perf.<i>` (the broker's MQTT ⇔ AMQP topic mapping).
//! - **idle** (`--idle N`): opens N connections (AMQP with one channel open, MQTT CONNECT),
//!   holds them for `--duration` seconds and reports how many opened and stayed open (it stops
//!   opening more at the first connection that fails, e.g. a broker out of descriptors); with
//!   `--broker-pid` the broker's resident memory growth per connection.
//!
//! A run lasts `--duration` seconds or `--count` messages per producer (whichever comes first;
//! 10 s when neither is given), flat out or at `--rate` messages per second per producer. Each
//! body starts with the send time (8 bytes, nanoseconds on this process's monotonic clock) and a
//! per-run tag (4 bytes), so consumers record end-to-end latency into an HDR histogram and
//! ignore stray messages from other runs. Bodies shorter than 12 bytes carry no timestamp.
//!
//! # Transports
//! Plain TCP is the baseline and keeps its code path; TLS (`amqps`, `mqtts`, `wss`; rustls
//! with the ring provider) trusts `--tls-ca FILE` for the URI's host, or anything with
//! `--tls-insecure`; WebSocket (`ws`, `wss`; path `/ws` by default, subprotocol `mqtt`) sends
//! each burst of MQTT output as one binary frame.
//!
//! # Output
//! One progress line per second, a human-readable summary, then one JSON line (the
//! [`Report`]) with every figure. The run fails (non-zero exit from the CLI, `Err` from
//! [`run`]) on any broker error — connection or channel close, publisher nack, returned
//! message, refused CONNACK/SUBACK — and when nothing progresses for `--timeout` seconds
//! (default 30), e.g. messages that never arrive. QoS 0 messages may be dropped by a broker:
//! the run then waits `--drain` seconds (default 2) after the last arrival and reports them as
//! `lost` instead of failing.
//!
//! # Not the bottleneck
//! Every connection is one task on a multi-threaded tokio runtime (`--threads`, default: the
//! number of CPUs). Producers encode many messages into one buffer and write it with one
//! `write` (`--batch-bytes`); consumers process every frame of a read before writing all the
//! acks at once; the hot frames (`basic.deliver`, content header/body, MQTT PUBLISH) are parsed
//! by hand without allocating. The tool measures its own CPU time (its threads'
//! `/proc/self/task/*/schedstat`) and reports it as a share of a core and as CPU time per
//! message; with `--broker-pid` it reports the broker's CPU the same way, so the summary says
//! how many times more load the client could drive than the broker handled (the self-check:
//! run `warren perf --producers 4 --consumers 4 --broker-pid $(pidof warren)` against warren).
//! `warren relay` ([`relay`]) is the other check: a loopback forwarder with no queues, against
//! which the same command shows the client's own ceiling on the machine.
//!
//! This crate is not part of the broker: the `warren` binary runs [`cli`] and [`relay::cli`]
//! for its `perf` and `relay` subcommands, and the broker library knows nothing of it.
#![warn(missing_docs)]

mod amqp;
mod mqtt;
pub mod relay;
mod stats;
mod transport;
mod uri;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warren_amqp::table::{FieldTable, FieldValue};

pub use stats::LatencySummary;
use uri::{AmqpUri, BrokerUri, MqttUri};

/// Bytes at the start of a body: send timestamp (u64) and run tag (u32), big endian.
pub(crate) const STAMP_LEN: usize = 12;
/// Default `--uri`.
const DEFAULT_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default `--duration` when neither it nor `--count` is given.
const DEFAULT_DURATION_S: f64 = 10.0;
/// How often the monitor checks for completion (progress lines are printed once a second).
const TICK: Duration = Duration::from_millis(50);

/// Which protocols a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Taken from the `--uri` scheme: AMQP producers and consumers, or MQTT ones.
    Auto,
    /// AMQP producers and consumers (`--uri amqp://…` or `amqps://…`).
    Amqp,
    /// MQTT publishers and subscribers (`--uri mqtt://…`, `mqtts://…`, `ws://…`, `wss://…`).
    Mqtt,
    /// MQTT publishers (`--uri mqtt://…`) and AMQP consumers (`--amqp-uri amqp://…`) on queues
    /// bound to `amq.topic`.
    MqttToAmqp,
}

/// Options of a run: the `warren perf` command line, also usable as a library value
/// (`Options { uri: …, ..Options::default() }`).
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "warren perf",
    about = "Load generator for AMQP 0-9-1 and MQTT brokers (RabbitMQ PerfTest-style)",
    long_about = "Load generator for AMQP 0-9-1 and MQTT 3.1.1 brokers (warren, RabbitMQ, \
                  Mosquitto, …), modelled on RabbitMQ PerfTest. Prints per-second progress, a \
                  summary with rates and end-to-end latency percentiles, and one JSON line."
)]
pub struct Options {
    /// Broker URI: amqp://user:pass@host:port/vhost or amqps://… (TLS);
    /// mqtt://user:pass@host:port or mqtts://… (TLS); MQTT over WebSocket
    /// ws://user:pass@host:port/path or wss://… (TLS; path default /ws). MQTT credentials are
    /// optional. Default ports: amqp 5672, amqps 5671, mqtt 1883, mqtts 8883, ws 15675,
    /// wss 15676.
    #[arg(long, default_value = DEFAULT_URI)]
    pub uri: String,
    /// AMQP URI (amqp:// or amqps://) of the consumers' broker for --mode mqtt-to-amqp.
    #[arg(long)]
    pub amqp_uri: Option<String>,
    /// TLS URIs (amqps, mqtts, wss): PEM bundle of the CA certificates to trust; the server
    /// certificate must be valid for the URI's host.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// TLS URIs: accept any server certificate, unverified (for benchmarking only).
    #[arg(long)]
    pub tls_insecure: bool,
    /// Protocols: auto (from --uri), amqp, mqtt, mqtt-to-amqp.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Number of producers (one connection each).
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: usize,
    /// Number of consumers (one connection each); 0 leaves the messages queued.
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: usize,
    /// Number of queues (AMQP) or topics (MQTT); producers and consumers are spread over them
    /// round-robin.
    #[arg(short = 'u', long, default_value_t = 1)]
    pub queues: usize,
    /// Queue names; `%d` is replaced by the queue index.
    #[arg(long, default_value = "perf-%d")]
    pub queue_pattern: String,
    /// Message body size in bytes (12 or more to measure latency).
    #[arg(short = 's', long, default_value_t = 16)]
    pub size: usize,
    /// Publisher confirms with at most WINDOW unconfirmed publishes (AMQP); for MQTT QoS 1/2
    /// the most unacknowledged PUBLISHes per publisher (default 256 there).
    #[arg(short = 'c', long, value_name = "WINDOW")]
    pub confirm: Option<u64>,
    /// Consumer prefetch (basic.qos prefetch-count; 0 = unlimited; manual ack only).
    #[arg(short = 'q', long, default_value_t = 0)]
    pub prefetch: u16,
    /// Consume with auto-ack (no-ack) instead of acknowledging each message.
    #[arg(short = 'a', long)]
    pub auto_ack: bool,
    /// Manual ack: acknowledge with multiple=true once every N messages.
    #[arg(long, value_name = "N")]
    pub multi_ack_every: Option<u64>,
    /// Persistent messages (delivery_mode 2) and durable queues.
    #[arg(short = 'f', long)]
    pub persistent: bool,
    /// Publish with mandatory=true (an unroutable message is returned, which fails the run).
    #[arg(long)]
    pub mandatory: bool,
    /// MQTT QoS of publishes and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Fixed publish rate per producer, messages per second (default: flat out).
    #[arg(short = 'r', long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Publish for this many seconds (default 10 when --count is not given).
    #[arg(short = 'z', long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Messages per producer.
    #[arg(short = 'C', long, value_name = "N")]
    pub count: Option<u64>,
    /// Idle-connection mode: open N connections and hold them for --duration seconds (opening
    /// stops at the first connection that fails).
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// Idle mode: connection handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    pub idle_parallel: usize,
    /// PID of the broker (same machine): report its CPU use and resident memory growth.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Fail after this many seconds without progress (or without a reply during set-up).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,
    /// QoS 0: after the publishers finish, stop waiting for missing messages after this many
    /// seconds without one (they are reported as lost).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub drain: f64,
    /// Runtime worker threads (default: number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Bytes of encoded messages per socket write.
    #[arg(long, default_value_t = 64 * 1024)]
    pub batch_bytes: usize,
    /// Do not delete the queues at the end.
    #[arg(long)]
    pub keep_queues: bool,
    /// AMQP: an argument of the queues published to, as KEY=VALUE (repeatable). An integer
    /// value is sent as a signed 32-bit integer, anything else as a string; e.g.
    /// `--queue-arg x-max-priority=10`, `--queue-arg x-dead-letter-exchange=` (empty string).
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    pub queue_args: Vec<String>,
    /// AMQP: publish with the priority property cycling 0, 1, …, N-1 (message k of a
    /// producer gets priority k % N).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub priority_spread: Option<u16>,
    /// AMQP: the consumers consume this queue instead of the ones published to, e.g. where
    /// those dead-letter (`--queue-arg x-dead-letter-routing-key=NAME`). The tool declares
    /// it (without arguments), purges it and deletes it at the end like the others.
    #[arg(long, value_name = "NAME")]
    pub consume_queue: Option<String>,
    /// AMQP, with --consume-queue: N more consumers, on the queues published to, that reject
    /// every message (basic.nack, requeue=false; one multiple=true nack per socket read), so
    /// the queue dead-letters it; they follow --prefetch. Only what reaches the consumers
    /// counts as consumed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rejecters: usize,
    /// No progress lines or summary (the JSON line is still printed by the CLI).
    #[arg(long)]
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            uri: DEFAULT_URI.to_string(),
            amqp_uri: None,
            tls_ca: None,
            tls_insecure: false,
            mode: Mode::Auto,
            producers: 1,
            consumers: 1,
            queues: 1,
            queue_pattern: "perf-%d".to_string(),
            size: 16,
            confirm: None,
            prefetch: 0,
            auto_ack: false,
            multi_ack_every: None,
            persistent: false,
            mandatory: false,
            qos: 0,
            rate: None,
            duration: None,
            count: None,
            idle: None,
            idle_parallel: 64,
            broker_pid: None,
            timeout: 30,
            drain: 2.0,
            threads: None,
            batch_bytes: 64 * 1024,
            keep_queues: false,
            queue_args: Vec::new(),
            priority_spread: None,
            consume_queue: None,
            rejecters: 0,
            quiet: false,
        }
    }
}

/// Which side of a run speaks which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Amqp,
    Mqtt,
    MqttToAmqp,
}

/// Options checked and resolved: what the tasks work from.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    /// The AMQP broker (producers and consumers for Amqp, consumers for MqttToAmqp).
    pub(crate) amqp: Option<AmqpUri>,
    /// The MQTT broker (Mqtt and MqttToAmqp).
    pub(crate) mqtt: Option<MqttUri>,
    /// Client TLS configuration, built once when a URI uses TLS.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) queues: usize,
    pub(crate) size: usize,
    /// AMQP confirm window, or MQTT QoS 1/2 inflight window.
    pub(crate) window: Option<u64>,
    pub(crate) prefetch: u16,
    pub(crate) auto_ack: bool,
    pub(crate) multi_ack_every: Option<u64>,
    pub(crate) persistent: bool,
    pub(crate) mandatory: bool,
    pub(crate) qos: u8,
    pub(crate) rate: Option<f64>,
    pub(crate) duration: Option<Duration>,
    pub(crate) count: Option<u64>,
    pub(crate) timeout: Duration,
    pub(crate) drain: Duration,
    pub(crate) batch_bytes: usize,
    pub(crate) queue_pattern: String,
    /// Arguments of the queues published to (AMQP `--queue-arg`).
    pub(crate) queue_args: FieldTable,
    /// Priorities cycled through by publishes (`--priority-spread`; `None`: no property).
    pub(crate) priority_spread: Option<u16>,
    /// The queue the consumers consume instead of the published ones (`--consume-queue`).
    pub(crate) consume_queue: Option<String>,
    /// Consumers on the published queues that reject what they get (`--rejecters`).
    pub(crate) rejecters: usize,
    /// Per-run tag in every body; also makes client ids unique.
    pub(crate) run_tag: u32,
}

impl Plan {
    /// Checks `o` and resolves defaults.
    pub(crate) fn new(o: &Options) -> Result<Plan> {
        let uri = BrokerUri::parse(&o.uri).context("--uri")?;
        let uses_tls = uri.transport().is_tls();
        let amqp_uri = o
            .amqp_uri
            .as_deref()
            .map(AmqpUri::parse)
            .transpose()
            .context("--amqp-uri")?;
        let (kind, amqp, mqtt) = match (o.mode, uri) {
            (Mode::Auto | Mode::Amqp, BrokerUri::Amqp(a)) => (Kind::Amqp, Some(a), None),
            (Mode::Auto | Mode::Mqtt, BrokerUri::Mqtt(m)) => (Kind::Mqtt, None, Some(m)),
            (Mode::MqttToAmqp, BrokerUri::Mqtt(m)) => {
                let a = amqp_uri.clone().ok_or_else(|| {
                    anyhow!("--mode mqtt-to-amqp needs --amqp-uri amqp://… for the consumers")
                })?;
                (Kind::MqttToAmqp, Some(a), Some(m))
            }
            (Mode::MqttToAmqp, BrokerUri::Amqp(_)) => {
                bail!("--mode mqtt-to-amqp: --uri is the MQTT side (mqtt://…), --amqp-uri the AMQP side")
            }
            (Mode::Amqp, BrokerUri::Mqtt(_)) => {
                bail!("--mode amqp needs an amqp:// or amqps:// --uri")
            }
            (Mode::Mqtt, BrokerUri::Amqp(_)) => {
                bail!("--mode mqtt needs an mqtt://, mqtts://, ws:// or wss:// --uri")
            }
        };
        let uses_tls = uses_tls || amqp_uri.as_ref().is_some_and(|a| a.transport.is_tls());
        let tls = if uses_tls {
            let config = transport::client_config(o.tls_ca.as_deref(), o.tls_insecure)?;
            Some(Arc::new(config))
        } else {
            if o.tls_ca.is_some() || o.tls_insecure {
                bail!("--tls-ca and --tls-insecure need a TLS URI (amqps://, mqtts:// or wss://)");
            }
            None
        };
        if amqp_uri.is_some() && kind != Kind::MqttToAmqp {
            bail!("--amqp-uri is only used with --mode mqtt-to-amqp");
        }
        if o.queues == 0 {
            bail!("--queues must be at least 1");
        }
        if o.idle.is_none() && o.producers == 0 && o.consumers == 0 {
            bail!("nothing to do: --producers and --consumers are both 0");
        }
        if o.queue_pattern.is_empty() {
            bail!("--queue-pattern must not be empty");
        }
        if o.queues > 1 && !o.queue_pattern.contains("%d") {
            bail!("--queue-pattern needs %d when there is more than one queue");
        }
        let rate = match o.rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            Some(r) => bail!("--rate must be a positive number of messages per second, not {r}"),
        };
        let duration = match o.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => Some(Duration::from_secs_f64(d)),
            Some(d) => bail!("--duration must be a positive number of seconds, not {d}"),
        };
        if o.count == Some(0) {
            bail!("--count must be at least 1");
        }
        let duration = match (duration, o.count) {
            (None, None) => Some(Duration::from_secs_f64(DEFAULT_DURATION_S)),
            (d, _) => d,
        };
        if !(o.drain.is_finite() && o.drain >= 0.0) {
            bail!("--drain must be a number of seconds");
        }
        if o.timeout == 0 {
            bail!("--timeout must be at least 1 second");
        }
        if o.batch_bytes < 1024 {
            bail!("--batch-bytes must be at least 1024");
        }
        if o.idle == Some(0) {
            bail!("--idle must be at least 1");
        }
        if o.idle_parallel == 0 {
            bail!("--idle-parallel must be at least 1");
        }
        let publishes_mqtt = matches!(kind, Kind::Mqtt | Kind::MqttToAmqp);
        if !publishes_mqtt && o.qos != 0 {
            bail!("--qos is for MQTT publishers (use --confirm for AMQP)");
        }
        let window = match (o.confirm, publishes_mqtt) {
            (Some(0), _) => bail!("--confirm must be at least 1"),
            (Some(w), true) if w >= u64::from(u16::MAX) => {
                bail!("--confirm: an MQTT window must be below 65535")
            }
            (Some(w), true) if o.qos == 0 => {
                bail!("--confirm {w}: QoS 0 MQTT publishes are never acknowledged (use --qos 1)")
            }
            (None, true) if o.qos > 0 => Some(256),
            (w, _) => w,
        };
        let consumes_amqp = matches!(kind, Kind::Amqp | Kind::MqttToAmqp);
        if o.auto_ack && o.multi_ack_every.is_some() {
            bail!("--multi-ack-every needs manual acks (drop --auto-ack)");
        }
        if o.multi_ack_every == Some(0) {
            bail!("--multi-ack-every must be at least 1");
        }
        if !consumes_amqp && (o.auto_ack || o.multi_ack_every.is_some() || o.prefetch > 0) {
            bail!("--auto-ack, --multi-ack-every and --prefetch are for AMQP consumers");
        }
        if publishes_mqtt && (o.persistent || o.mandatory) {
            bail!("--persistent and --mandatory are for AMQP publishers (MQTT: use --qos)");
        }
        if o.size > 64 * 1024 * 1024 {
            bail!("--size is limited to 64 MiB");
        }
        let threads = o.threads.unwrap_or(1);
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        if amqp.is_none() && !o.queue_args.is_empty() {
            bail!("--queue-arg is for AMQP queues");
        }
        let queue_args = parse_queue_args(&o.queue_args)?;
        if kind != Kind::Amqp
            && (o.priority_spread.is_some() || o.consume_queue.is_some() || o.rejecters > 0)
        {
            bail!("--priority-spread, --consume-queue and --rejecters are for AMQP runs (--mode amqp)");
        }
        if let Some(q) = &o.consume_queue {
            if q.is_empty() {
                bail!("--consume-queue must not be empty");
            }
            if (0..o.queues).any(|i| o.queue_pattern.replace("%d", &i.to_string()) == *q) {
                bail!("--consume-queue {q:?} is one of the queues published to");
            }
        }
        if o.rejecters > 0 && o.consume_queue.is_none() {
            bail!("--rejecters needs --consume-queue (where the rejected messages are consumed)");
        }
        Ok(Plan {
            kind,
            amqp,
            mqtt,
            tls,
            producers: o.producers,
            consumers: o.consumers,
            queues: o.queues,
            size: o.size,
            window,
            prefetch: o.prefetch,
            auto_ack: o.auto_ack,
            multi_ack_every: o.multi_ack_every,
            persistent: o.persistent,
            mandatory: o.mandatory,
            qos: o.qos,
            rate,
            duration,
            count: o.count,
            timeout: Duration::from_secs(o.timeout),
            drain: Duration::from_secs_f64(o.drain),
            batch_bytes: o.batch_bytes,
            queue_pattern: o.queue_pattern.clone(),
            queue_args,
            priority_spread: o.priority_spread,
            consume_queue: o.consume_queue.clone(),
            rejecters: o.rejecters,
            run_tag: rand::random::<u32>(),
        })
    }

    /// Name of queue `i`.
    pub(crate) fn queue_name(&self, i: usize) -> String {
        self.queue_pattern.replace("%d", &i.to_string())
    }

    /// MQTT topic of queue/topic `i`.
    pub(crate) fn topic(&self, i: usize) -> String {
        format!("perf/{i}")
    }

    /// Deliveries expected for `published[i]` messages from each producer: AMQP queues have
    /// competing consumers (one delivery if the queue has any), MQTT topics fan out to every
    /// subscriber.
    pub(crate) fn expected(&self, published: &[u64]) -> u64 {
        if self.consume_queue.is_some() {
            // Every message ends up in the one queue every consumer shares.
            return published.iter().sum::<u64>() * u64::from(self.consumers > 0);
        }
        let subscribers = |q: usize| (0..self.consumers).filter(|j| j % self.queues == q).count();
        published
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let subs = subscribers(i % self.queues) as u64;
                match self.kind {
                    Kind::Mqtt => n * subs,
                    Kind::Amqp | Kind::MqttToAmqp => n * u64::from(subs > 0),
                }
            })
            .sum()
    }

    /// Whether messages may be dropped by the broker (QoS 0 all the way).
    pub(crate) fn lossy(&self) -> bool {
        self.kind == Kind::Mqtt && self.qos == 0
    }
}

/// Parses `--queue-arg KEY=VALUE` values: integers become signed 32-bit integers (`I`),
/// anything else a long string (`S`).
fn parse_queue_args(args: &[String]) -> Result<FieldTable> {
    let mut table = FieldTable::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("--queue-arg {arg:?}: expected KEY=VALUE");
        };
        if key.is_empty() {
            bail!("--queue-arg {arg:?}: the key is empty");
        }
        let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
        let value = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n: i32 = value
                .parse()
                .with_context(|| format!("--queue-arg {arg:?}: not a 32-bit integer"))?;
            FieldValue::LongInt(n)
        } else {
            FieldValue::LongString(Bytes::from(value.to_string()))
        };
        table.insert(key, value);
    }
    Ok(table)
}

/// Counters shared by the tasks of a run and the monitor.
pub(crate) struct Shared {
    pub(crate) plan: Plan,
    /// Messages written by each producer.
    pub(crate) published: Vec<AtomicU64>,
    /// Publishes confirmed (AMQP confirms, MQTT PUBACK/PUBCOMP).
    pub(crate) confirmed: AtomicU64,
    /// Messages consumed (this run's).
    pub(crate) consumed: AtomicU64,
    /// Messages consumed that did not carry this run's tag.
    pub(crate) foreign: AtomicU64,
    /// Messages the rejecters rejected (`--rejecters`).
    pub(crate) rejected: AtomicU64,
    /// `connection.blocked` notifications received.
    pub(crate) blocked: AtomicU64,
    /// When each producer finished (ns on [`stats::now_ns`]; 0 = still running).
    pub(crate) producer_done_ns: Vec<AtomicU64>,
    /// When the first message was consumed (ns on [`stats::now_ns`]; `u64::MAX` = none yet).
    pub(crate) first_consume_ns: AtomicU64,
    /// When the last message was consumed (ns on [`stats::now_ns`]).
    pub(crate) last_consume_ns: AtomicU64,
    /// One latency histogram per consumer, emptied into the run's total every second.
    pub(crate) latency: Vec<Mutex<Histogram<u64>>>,
    /// Tells consumers to close.
    pub(crate) stop: CancellationToken,
}

impl Shared {
    fn published_total(&self) -> u64 {
        self.published
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum()
    }

    fn producers_finished(&self) -> bool {
        self.producer_done_ns
            .iter()
            .all(|d| d.load(Ordering::Acquire) != 0)
    }

    /// Records a consumed batch: `n` messages, `foreign` of them not ours, latencies in `lat`.
    pub(crate) fn consumed_batch(&self, consumer: usize, n: u64, foreign: u64, lat: &[u64]) {
        if n > 0 {
            let now = stats::now_ns();
            self.consumed.fetch_add(n, Ordering::Relaxed);
            self.last_consume_ns.fetch_max(now, Ordering::Relaxed);
            if self.first_consume_ns.load(Ordering::Relaxed) == u64::MAX {
                self.first_consume_ns.fetch_min(now, Ordering::Relaxed);
            }
        }
        if foreign > 0 {
            self.foreign.fetch_add(foreign, Ordering::Relaxed);
        }
        if !lat.is_empty() {
            if let Some(h) = self.latency.get(consumer) {
                let mut h = h.lock();
                for &ns in lat {
                    stats::record(&mut h, ns);
                }
            }
        }
    }
}

/// Start signal: the instant the measured run begins.
pub(crate) type Go = watch::Receiver<Option<Instant>>;

/// Confirm-window refill with hysteresis: once the window is full, publishing resumes only
/// when an eighth of it is free again, so a broker that acknowledges one message at a time
/// does not make the producer write one message per syscall.
#[derive(Debug, Default)]
pub(crate) struct Refill {
    full: bool,
}

impl Refill {
    /// Whether a producer with `outstanding` unconfirmed messages may publish now.
    pub(crate) fn ready(&mut self, outstanding: u64, window: u64) -> bool {
        if outstanding >= window {
            self.full = true;
            return false;
        }
        if self.full && outstanding > window - (window / 8).max(1) {
            return false;
        }
        self.full = false;
        true
    }
}

/// Whether `deadline` (if any) is still ahead.
pub(crate) fn before(deadline: Option<Instant>) -> bool {
    match deadline {
        Some(d) => Instant::now() < d,
        None => true,
    }
}

/// Waits for the start signal.
pub(crate) async fn wait_go(go: &mut Go) -> Result<Instant> {
    loop {
        if let Some(t) = *go.borrow_and_update() {
            return Ok(t);
        }
        go.changed()
            .await
            .map_err(|_| anyhow!("the run was abandoned before it started"))?;
    }
}

/// Parses the stamp at the start of a body: `Some(latency_ns)` for this run's messages, `None`
/// for a body from another run; bodies too short for a stamp count as ours without latency.
pub(crate) fn read_stamp(head: &[u8], run_tag: u32, now: u64) -> Stamp {
    let (Some(ts), Some(tag)) = (head.get(..8), head.get(8..STAMP_LEN)) else {
        return Stamp::Unstamped;
    };
    let mut t = [0u8; 8];
    t.copy_from_slice(ts);
    let mut g = [0u8; 4];
    g.copy_from_slice(tag);
    if u32::from_be_bytes(g) != run_tag {
        return Stamp::Foreign;
    }
    Stamp::Latency(now.saturating_sub(u64::from_be_bytes(t)))
}

/// What a body's stamp says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// Ours; end-to-end latency in ns.
    Latency(u64),
    /// Too short to carry a stamp.
    Unstamped,
    /// Another run's message.
    Foreign,
}

/// Writes the stamp (now, run tag) into the first bytes of `body` (as far as it is long).
pub(crate) fn write_stamp(body: &mut [u8], run_tag: u32) {
    if body.len() >= STAMP_LEN {
        body[..8].copy_from_slice(&stats::now_ns().to_be_bytes());
        body[8..STAMP_LEN].copy_from_slice(&run_tag.to_be_bytes());
    }
}

/// Results of idle-connection mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub requested: usize,
    /// Connections fully opened (AMQP: channel open; MQTT: CONNACK accepted).
    pub opened: usize,
    /// Connections that failed to open.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Opened connections still open at the end of the hold.
    pub still_open: usize,
    /// Seconds spent opening them.
    pub connect_s: f64,
    /// Connections opened per second.
    pub connect_rate: f64,
    /// Seconds they were held.
    pub hold_s: f64,
    /// Broker RSS growth per opened connection (KiB), with `--broker-pid`.
    pub rss_per_conn_kib: Option<f64>,
}

/// Everything a run measured; printed as the final JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `amqp`, `mqtt`, `mqtt-to-amqp`, or `idle-amqp` / `idle-mqtt`.
    pub mode: String,
    /// The broker URI (password hidden).
    pub uri: String,
    /// The consumers' AMQP URI in mqtt-to-amqp mode (password hidden).
    pub amqp_uri: Option<String>,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Queues or topics.
    pub queues: usize,
    /// Body size in bytes.
    pub size: usize,
    /// MQTT QoS (MQTT publishers only).
    pub qos: Option<u8>,
    /// Confirm / inflight window.
    pub confirm: Option<u64>,
    /// Consumer prefetch (0 = unlimited).
    pub prefetch: u16,
    /// Consumers used auto-ack.
    pub auto_ack: bool,
    /// Persistent messages and durable queues.
    pub persistent: bool,
    /// Fixed rate per producer, if any.
    pub rate: Option<f64>,
    /// Seconds from the start to the end of the run (consumers drained).
    pub elapsed_s: f64,
    /// Seconds producers were publishing (to the last confirm with confirms).
    pub publish_s: f64,
    /// Seconds from the start to the last message consumed.
    pub consume_s: f64,
    /// Seconds from the start to the first message consumed.
    pub first_consume_s: f64,
    /// Messages published (written to the socket).
    pub published: u64,
    /// Publishes confirmed (AMQP confirms, MQTT PUBACK/PUBCOMP).
    pub confirmed: u64,
    /// Messages consumed.
    pub consumed: u64,
    /// Deliveries expected from what was published (MQTT fan-out included).
    pub expected: u64,
    /// Expected deliveries that never arrived (QoS 0 only; otherwise the run fails).
    pub lost: u64,
    /// Messages from other runs that consumers discarded.
    pub foreign: u64,
    /// Messages the rejecters rejected (`--rejecters`), to be dead-lettered.
    pub rejected: u64,
    /// Publishes cycled through priorities 0..N-1 (`--priority-spread N`).
    pub priority_spread: Option<u16>,
    /// `connection.blocked` notifications the producers got.
    pub blocked: u64,
    /// Messages left in the queues (AMQP, without consumers).
    pub queued: Option<u64>,
    /// Published messages per second (all producers).
    pub publish_rate: f64,
    /// Confirmed publishes per second.
    pub confirm_rate: f64,
    /// Consumed messages per second (all consumers).
    pub consume_rate: f64,
    /// End-to-end latency.
    pub latency: LatencySummary,
    /// CPU seconds the tool's threads used during the run.
    pub client_cpu_s: f64,
    /// The tool's CPU use as a share of one core (100 = one core busy).
    pub client_cpu_pct: f64,
    /// The tool's runtime threads.
    pub client_threads: usize,
    /// The tool's CPU time per message handled (published + consumed), µs.
    pub client_cpu_us_per_msg: f64,
    /// The broker's CPU use as a share of one core (with `--broker-pid`).
    pub broker_cpu_pct: Option<f64>,
    /// The broker's CPU time per message handled (published + consumed), µs.
    pub broker_cpu_us_per_msg: Option<f64>,
    /// How many times more messages the client could handle per CPU second than the broker
    /// did (with `--broker-pid`): above 1 the client is not the bottleneck.
    pub client_headroom: Option<f64>,
    /// Broker resident memory before the run (KiB, with `--broker-pid`).
    pub broker_rss_before_kib: Option<u64>,
    /// Broker resident memory at the end of the run, before clean-up (KiB).
    pub broker_rss_after_kib: Option<u64>,
    /// Idle-connection results (idle mode only).
    pub idle: Option<IdleReport>,
}

/// The error of a run whose producers finished but whose consumers never received every
/// message (the broker lost or withheld some): the figures measured until then come with it.
/// [`cli`] prints them before the error; library callers can `downcast_ref` the error.
#[derive(Debug)]
pub struct IncompleteRun {
    /// What the run measured (`lost` says how many messages never arrived).
    pub report: Box<Report>,
    /// Why the run failed.
    pub message: String,
}

impl std::fmt::Display for IncompleteRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IncompleteRun {}

impl Report {
    /// The single-line JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Runs a load test and returns what it measured. Builds its own multi-threaded tokio runtime
/// (threads named `perf-worker`), so call it from a plain thread (e.g. `spawn_blocking`), not
/// from inside an async task. Progress and the summary go to stdout unless `quiet`.
pub fn run(options: &Options) -> Result<Report> {
    let plan = Plan::new(options)?;
    let threads = options.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(stats::THREAD_NAME)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = runtime.block_on(async {
        match options.idle {
            Some(n) => idle_run(plan, options, n, threads).await,
            None => load_run(plan, options, threads).await,
        }
    });
    // Connection tasks are done or aborted by now; don't wait for stragglers.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = report?;
    if !options.quiet {
        print_summary(&report);
    }
    Ok(report)
}

/// The `warren perf` entry point: runs, prints the JSON line, maps errors to exit status 1.
pub fn cli(options: &Options) -> ExitCode {
    match run(options) {
        Ok(report) => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(incomplete) = e.downcast_ref::<IncompleteRun>() {
                if !options.quiet {
                    print_summary(&incomplete.report);
                }
                println!("{}", incomplete.report.to_json());
            }
            eprintln!("warren perf: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads more bytes from a broker (or client) socket into `buf`, waiting at most `wait`
/// (`None`: no limit); errors on EOF and on timeout. Returns the number of bytes read.
pub(crate) async fn read_more(
    io: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut bytes::BytesMut,
    wait: Option<Duration>,
) -> Result<usize> {
    use tokio::io::AsyncReadExt;
    if buf.capacity() - buf.len() < 32 * 1024 {
        buf.reserve(128 * 1024);
    }
    let read = io.read_buf(buf);
    let n = match wait {
        Some(w) => tokio::time::timeout(w, read)
            .await
            .map_err(|_| anyhow!("no data from the peer for {w:?}"))?,
        None => read.await,
    }
    .context("reading from the socket")?;
    if n == 0 {
        bail!("the peer closed the TCP connection");
    }
    Ok(n)
}

/// A spawned connection task's outcome.
type TaskSet = JoinSet<Result<()>>;

/// Waits for the next task to end; `Err` if it failed or panicked.
async fn next_failure(tasks: &mut TaskSet) -> Result<()> {
    match tasks.join_next().await {
        None => std::future::pending().await,
        Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(anyhow!("a connection task failed: {e}")),
    }
}

/// Producer/consumer run: set-up, start, monitor, drain, clean-up.
async fn load_run(plan: Plan, options: &Options, threads: usize) -> Result<Report> {
    let consumers = plan.consumers;
    let producers = plan.producers;
    let mut latency = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        latency.push(Mutex::new(stats::new_histogram()?));
    }
    let timeout = plan.timeout;
    if plan.amqp.is_some() {
        amqp::setup_queues(&plan).await?;
    }
    let shared = Arc::new(Shared {
        published: (0..producers).map(|_| AtomicU64::new(0)).collect(),
        confirmed: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        blocked: AtomicU64::new(0),
        producer_done_ns: (0..producers).map(|_| AtomicU64::new(0)).collect(),
        first_consume_ns: AtomicU64::new(u64::MAX),
        last_consume_ns: AtomicU64::new(0),
        latency,
        stop: CancellationToken::new(),
        plan,
    });
    let (go_tx, go_rx) = watch::channel::<Option<Instant>>(None);
    let rejecters = shared.plan.rejecters;
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(producers + consumers + rejecters + 1);
    let mut tasks = TaskSet::new();

    let result = async {
        // Consumers first, so nothing is published before every subscription is in place.
        for j in 0..consumers {
            let (s, r) = (shared.clone(), ready_tx.clone());
            match s.plan.kind {
                Kind::Amqp | Kind::MqttToAmqp => tasks.spawn(amqp::consumer(s, j, r)),
                Kind::Mqtt => tasks.spawn(mqtt::subscriber(s, j, r)),
            };
        }
        wait_ready(&mut tasks, &mut ready_rx, consumers, timeout, "consumers").await?;
        for r in 0..rejecters {
            tasks.spawn(amqp::rejecter(shared.clone(), r, ready_tx.clone()));
        }
        wait_ready(&mut tasks, &mut ready_rx, rejecters, timeout, "rejecters").await?;
        for i in 0..producers {
            let (s, r, g) = (shared.clone(), ready_tx.clone(), go_rx.clone());
            match s.plan.kind {
                Kind::Amqp => tasks.spawn(amqp::producer(s, i, r, g)),
                Kind::Mqtt | Kind::MqttToAmqp => tasks.spawn(mqtt::publisher(s, i, r, g)),
            };
        }
        wait_ready(&mut tasks, &mut ready_rx, producers, timeout, "producers").await?;
        monitor(&shared, &mut tasks, go_tx, options, threads).await
    }
    .await;
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            tasks.abort_all();
            // Best effort: don't leave the queues (and their messages) behind.
            if shared.plan.amqp.is_some() && !options.keep_queues {
                let cleanup = amqp::finish_queues(&shared.plan, false);
                let _ = tokio::time::timeout(Duration::from_secs(5), cleanup).await;
            }
            return Err(e);
        }
    };
    // Let the tasks close their connections cleanly.
    shared.stop.cancel();
    let closing = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                if !options.quiet {
                    eprintln!("warren perf: warning while closing: {e:#}");
                }
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    if shared.plan.amqp.is_some() {
        match amqp::finish_queues(&shared.plan, options.keep_queues).await {
            Ok(q) => report.queued = (consumers == 0).then_some(q),
            Err(e) => eprintln!("warren perf: warning: cleaning up the queues: {e:#}"),
        }
    }
    Ok(report)
}

/// Waits for `n` ready signals, failing on a task error or after `timeout`.
async fn wait_ready(
    tasks: &mut TaskSet,
    ready: &mut mpsc::Receiver<()>,
    n: usize,
    timeout: Duration,
    what: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    for got in 0..n {
        tokio::select! {
            r = ready.recv() => {
                r.ok_or_else(|| anyhow!("internal: ready channel closed"))?;
            }
            r = next_failure(tasks) => r?,
            _ = tokio::time::sleep_until(deadline) => {
                bail!("only {got} of {n} {what} were ready after {timeout:?}")
            }
        }
    }
    Ok(())
}

/// Per-second progress figures.
struct Sample {
    at: Instant,
    published: u64,
    confirmed: u64,
    consumed: u64,
}

impl Sample {
    fn take(shared: &Shared) -> Sample {
        Sample {
            at: Instant::now(),
            published: shared.published_total(),
            confirmed: shared.confirmed.load(Ordering::Relaxed),
            consumed: shared.consumed.load(Ordering::Relaxed),
        }
    }

    fn moved_since(&self, other: &Sample) -> bool {
        (self.published, self.confirmed, self.consumed)
            != (other.published, other.confirmed, other.consumed)
    }
}

/// Starts the run, prints progress each second, decides when it is over, builds the report.
async fn monitor(
    shared: &Arc<Shared>,
    tasks: &mut TaskSet,
    go: watch::Sender<Option<Instant>>,
    options: &Options,
    threads: usize,
) -> Result<Report> {
    let plan = &shared.plan;
    let cpu0 = stats::threads_cpu(stats::THREAD_NAME);
    let broker_cpu0 = options.broker_pid.and_then(stats::process_cpu);
    let rss_before = options.broker_pid.and_then(stats::process_rss_kib);
    let start = Instant::now();
    let start_ns = stats::now_ns();
    go.send(Some(start))
        .map_err(|_| anyhow!("internal: every task is gone"))?;

    let mut total = stats::new_histogram()?;
    let mut interval_h = stats::new_histogram()?;
    let mut last_print = Sample::take(shared);
    let mut last_move = Sample::take(shared);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut second = 1u64;
    let mut incomplete: Option<String> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            r = next_failure(tasks) => { r?; continue; }
        }
        let now = Sample::take(shared);
        if now.moved_since(&last_move) {
            last_move = now;
        } else {
            let done = shared.producers_finished();
            let stalled_for = last_move.at.elapsed();
            if done && plan.lossy() && stalled_for >= plan.drain {
                break;
            }
            if stalled_for >= plan.timeout {
                let expected = plan.expected(&published_each(shared));
                let message = format!(
                    "no progress for {:?}: published {}, confirmed {}, consumed {} of {} expected{}",
                    plan.timeout,
                    now.published,
                    now.confirmed,
                    now.consumed,
                    expected,
                    if done { " (producers finished: messages are missing)" } else { "" }
                );
                if !done {
                    bail!(message);
                }
                // Everything was published: report what was measured along with the failure.
                incomplete = Some(message);
                break;
            }
        }
        let now = Sample::take(shared);
        if now.at.duration_since(start) >= Duration::from_secs(second) {
            second = now.at.duration_since(start).as_secs() + 1;
            for h in &shared.latency {
                let mut h = h.lock();
                let _ = interval_h.add(&*h);
                h.reset();
            }
            if !options.quiet {
                print_progress(start, &last_print, &now, &interval_h, plan);
            }
            let _ = total.add(&interval_h);
            interval_h.reset();
            last_print = now;
        }
        if shared.producers_finished() {
            let expected = plan.expected(&published_each(shared));
            if shared.consumed.load(Ordering::Relaxed) >= expected {
                break;
            }
        }
    }
    let end = Instant::now();
    let cpu = stats::threads_cpu(stats::THREAD_NAME).saturating_sub(cpu0);
    let broker_cpu = options
        .broker_pid
        .and_then(stats::process_cpu)
        .zip(broker_cpu0)
        .map(|(b1, b0)| b1.saturating_sub(b0));
    let rss_after = options.broker_pid.and_then(stats::process_rss_kib);
    for h in &shared.latency {
        let _ = total.add(&*h.lock());
    }
    let _ = total.add(&interval_h);

    let published_each = published_each(shared);
    let published: u64 = published_each.iter().sum();
    let expected = plan.expected(&published_each);
    let consumed = shared.consumed.load(Ordering::Relaxed);
    let confirmed = shared.confirmed.load(Ordering::Relaxed);
    let lost = expected.saturating_sub(consumed);
    if lost > 0 && !plan.lossy() && incomplete.is_none() {
        incomplete = Some(format!("{lost} of {expected} messages were not consumed"));
    }
    let done_ns = shared
        .producer_done_ns
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .max()
        .unwrap_or(start_ns);
    let publish_s = done_ns.saturating_sub(start_ns) as f64 / 1e9;
    let last_consume = shared.last_consume_ns.load(Ordering::Relaxed);
    let consume_s = last_consume.saturating_sub(start_ns) as f64 / 1e9;
    let first_consume = shared.first_consume_ns.load(Ordering::Relaxed);
    let first_consume_s = if first_consume == u64::MAX {
        0.0
    } else {
        first_consume.saturating_sub(start_ns) as f64 / 1e9
    };
    let elapsed_s = end.duration_since(start).as_secs_f64();
    let handled = (published + consumed) as f64;
    let per_msg_us = |cpu: Duration| {
        if handled > 0.0 {
            cpu.as_secs_f64() * 1e6 / handled
        } else {
            0.0
        }
    };
    let client_us = per_msg_us(cpu);
    let broker_us = broker_cpu.map(per_msg_us);
    let report = Report {
        mode: match plan.kind {
            Kind::Amqp => "amqp",
            Kind::Mqtt => "mqtt",
            Kind::MqttToAmqp => "mqtt-to-amqp",
        }
        .to_string(),
        uri: match (&plan.mqtt, &plan.amqp) {
            (Some(m), _) => m.to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => String::new(),
        },
        amqp_uri: (plan.kind == Kind::MqttToAmqp)
            .then(|| plan.amqp.as_ref().map(ToString::to_string))
            .flatten(),
        producers: plan.producers,
        consumers: plan.consumers,
        queues: plan.queues,
        size: plan.size,
        qos: (plan.kind != Kind::Amqp).then_some(plan.qos),
        confirm: plan.window,
        prefetch: plan.prefetch,
        auto_ack: plan.auto_ack,
        persistent: plan.persistent,
        rate: plan.rate,
        elapsed_s,
        publish_s,
        consume_s,
        first_consume_s,
        published,
        confirmed,
        consumed,
        expected,
        lost,
        foreign: shared.foreign.load(Ordering::Relaxed),
        rejected: shared.rejected.load(Ordering::Relaxed),
        priority_spread: plan.priority_spread,
        blocked: shared.blocked.load(Ordering::Relaxed),
        queued: None,
        publish_rate: stats::rate(published as f64, publish_s),
        confirm_rate: if plan.window.is_some() {
            stats::rate(confirmed as f64, publish_s)
        } else {
            0.0
        },
        consume_rate: stats::rate(consumed as f64, consume_s),
        latency: LatencySummary::from_histogram(&total),
        client_cpu_s: cpu.as_secs_f64(),
        client_cpu_pct: 100.0 * stats::rate(cpu.as_secs_f64(), elapsed_s),
        client_threads: threads,
        client_cpu_us_per_msg: client_us,
        broker_cpu_pct: broker_cpu.map(|b| 100.0 * stats::rate(b.as_secs_f64(), elapsed_s)),
        broker_cpu_us_per_msg: broker_us,
        client_headroom: broker_us.filter(|_| client_us > 0.0).map(|b| b / client_us),
        broker_rss_before_kib: rss_before,
        broker_rss_after_kib: rss_after,
        idle: None,
    };
    match incomplete {
        None => Ok(report),
        Some(message) => Err(IncompleteRun {
            report: Box::new(report),
            message,
        }
        .into()),
    }
}

fn published_each(shared: &Shared) -> Vec<u64> {
    shared
        .published
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .collect()
}

fn print_progress(start: Instant, prev: &Sample, now: &Sample, lat: &Histogram<u64>, plan: &Plan) {
    let secs = now.at.duration_since(prev.at).as_secs_f64();
    let r = |a: u64, b: u64| stats::rate(a.saturating_sub(b) as f64, secs);
    let mut line = format!(
        "time {:6.1} s, sent {:>9.0} msg/s",
        now.at.duration_since(start).as_secs_f64(),
        r(now.published, prev.published)
    );
    if plan.window.is_some() {
        line.push_str(&format!(
            ", confirmed {:>9.0} msg/s",
            r(now.confirmed, prev.confirmed)
        ));
    }
    line.push_str(&format!(
        ", received {:>9.0} msg/s",
        r(now.consumed, prev.consumed)
    ));
    if !lat.is_empty() {
        let s = LatencySummary::from_histogram(lat);
        line.push_str(&format!(
            ", latency p50 {} p99 {} max {}",
            stats::fmt_us(s.p50_us),
            stats::fmt_us(s.p99_us),
            stats::fmt_us(s.max_us)
        ));
    }
    println!("{line}");
}

/// The human-readable summary.
fn print_summary(r: &Report) {
    if let Some(idle) = &r.idle {
        println!(
            "idle {}: {} of {} connections opened in {:.2} s ({:.0}/s), {} failed, {} still open after {:.1} s",
            r.uri,
            idle.opened,
            idle.requested,
            idle.connect_s,
            idle.connect_rate,
            idle.failed,
            idle.still_open,
            idle.hold_s
        );
        if let Some(e) = &idle.first_error {
            println!("first failure: {e}");
        }
        if let (Some(b), Some(a)) = (r.broker_rss_before_kib, r.broker_rss_after_kib) {
            println!(
                "broker RSS {b} KiB -> {a} KiB: {:.2} KiB per connection",
                idle.rss_per_conn_kib.unwrap_or(0.0)
            );
        }
        return;
    }
    println!(
        "{} {} | {}p x {}c, {} queue(s) | {} B{}{}{}",
        r.mode,
        r.uri,
        r.producers,
        r.consumers,
        r.queues,
        r.size,
        r.qos.map(|q| format!(" | QoS {q}")).unwrap_or_default(),
        r.confirm
            .map(|w| format!(" | window {w}"))
            .unwrap_or_default(),
        r.rate
            .map(|x| format!(" | {x} msg/s per producer"))
            .unwrap_or_default()
    );
    println!(
        "published {} ({:.0} msg/s over {:.3} s){}",
        r.published,
        r.publish_rate,
        r.publish_s,
        if r.confirm.is_some() {
            format!(", confirmed {} ({:.0} msg/s)", r.confirmed, r.confirm_rate)
        } else {
            String::new()
        }
    );
    println!(
        "consumed {} of {} expected ({:.0} msg/s over {:.3} s){}{}",
        r.consumed,
        r.expected,
        r.consume_rate,
        r.consume_s,
        if r.lost > 0 {
            format!(", {} lost", r.lost)
        } else {
            String::new()
        },
        r.queued
            .map(|q| format!(", {q} left queued"))
            .unwrap_or_default()
    );
    println!("latency {}", r.latency.line());
    let mut cpu = format!(
        "client CPU {:.0}% of a core ({:.3} s on {} threads, {:.2} µs per message)",
        r.client_cpu_pct, r.client_cpu_s, r.client_threads, r.client_cpu_us_per_msg
    );
    if let (Some(pct), Some(us)) = (r.broker_cpu_pct, r.broker_cpu_us_per_msg) {
        cpu.push_str(&format!("; broker CPU {pct:.0}% ({us:.2} µs per message)"));
    }
    println!("{cpu}");
    // The client is not the bottleneck when its threads had time to spare, or when it needs
    // far less CPU per message than the broker.
    let capacity = 100.0 * r.client_threads as f64;
    let spare = r.client_cpu_pct < 0.5 * capacity;
    let cheap = r.client_headroom.is_some_and(|h| h >= 2.0);
    println!(
        "self-check: the client kept its {} thread(s) {:.0}% busy{}: {}",
        r.client_threads,
        100.0 * r.client_cpu_pct / capacity,
        r.client_headroom
            .map(|h| format!(" and needs {h:.1}x less CPU per message than the broker"))
            .unwrap_or_default(),
        if spare || cheap {
            "the client is not the bottleneck"
        } else {
            "WARNING, the client may be limiting the result"
        }
    );
    if let (Some(b), Some(a)) = (r.broker_rss_before_kib, r.broker_rss_after_kib) {
        println!("broker RSS {b} KiB -> {a} KiB");
    }
    if r.foreign > 0 {
        println!("{} messages from other runs were discarded", r.foreign);
    }
    if r.rejected > 0 {
        println!("rejected (for dead-lettering) {}", r.rejected);
    }
    if r.blocked > 0 {
        println!("the broker blocked publishers {} time(s)", r.blocked);
    }
}

/// Idle-connection mode.
async fn idle_run(plan: Plan, options: &Options, n: usize, threads: usize) -> Result<Report> {
    let fd_limit = stats::raise_fd_limit();
    if let Some(limit) = fd_limit {
        if (limit as usize) < n + 64 && !options.quiet {
            eprintln!(
                "warren perf: warning: open-file limit {limit} is too low for {n} connections (ulimit -n)"
            );
        }
    }
    let hold = plan.duration.unwrap_or(Duration::from_secs(10));
    let rss_before = options.broker_pid.and_then(stats::process_rss_kib);
    let started = Instant::now();
    let mut idle = match plan.kind {
        Kind::Amqp => amqp::idle(&plan, n, options.idle_parallel).await?,
        Kind::Mqtt => mqtt::idle(&plan, n, options.idle_parallel).await?,
        Kind::MqttToAmqp => bail!("--idle needs --mode amqp or mqtt"),
    };
    let connect_s = started.elapsed().as_secs_f64();
    if !options.quiet {
        println!(
            "opened {} of {n} connections in {connect_s:.2} s, holding them for {:.1} s",
            idle.opened(),
            hold.as_secs_f64()
        );
    }
    // Let the broker settle before reading its memory.
    tokio::time::sleep(hold).await;
    let rss_after = options.broker_pid.and_then(stats::process_rss_kib);
    let still_open = idle.still_open().await;
    let opened = idle.opened();
    idle.close().await;
    let rss_per_conn_kib = rss_before
        .zip(rss_after)
        .filter(|_| opened > 0)
        .map(|(b, a)| (a as f64 - b as f64) / opened as f64);
    let uri = match (&plan.mqtt, &plan.amqp) {
        (Some(m), _) => m.to_string(),
        (None, Some(a)) => a.to_string(),
        (None, None) => String::new(),
    };
    Ok(Report {
        mode: format!(
            "idle-{}",
            if plan.kind == Kind::Amqp {
                "amqp"
            } else {
                "mqtt"
            }
        ),
        uri,
        amqp_uri: None,
        producers: 0,
        consumers: 0,
        queues: 0,
        size: 0,
        qos: None,
        confirm: None,
        prefetch: 0,
        auto_ack: false,
        persistent: false,
        rate: None,
        elapsed_s: started.elapsed().as_secs_f64(),
        publish_s: 0.0,
        consume_s: 0.0,
        first_consume_s: 0.0,
        published: 0,
        confirmed: 0,
        consumed: 0,
        expected: 0,
        lost: 0,
        foreign: 0,
        rejected: 0,
        priority_spread: None,
        blocked: 0,
        queued: None,
        publish_rate: 0.0,
        confirm_rate: 0.0,
        consume_rate: 0.0,
        latency: LatencySummary::default(),
        client_cpu_s: 0.0,
        client_cpu_pct: 0.0,
        client_threads: threads,
        client_cpu_us_per_msg: 0.0,
        broker_cpu_pct: None,
        broker_cpu_us_per_msg: None,
        client_headroom: None,
        broker_rss_before_kib: rss_before,
        broker_rss_after_kib: rss_after,
        idle: Some(IdleReport {
            requested: n,
            opened,
            failed: idle.failed,
            first_error: idle.first_error.clone(),
            still_open,
            connect_s,
            connect_rate: stats::rate(opened as f64, connect_s),
            hold_s: hold.as_secs_f64(),
            rss_per_conn_kib,
        }),
    })
    .and_then(|r| {
        if opened == 0 {
            Err(anyhow!(
                "no connection could be opened: {}",
                idle.first_error.unwrap_or_default()
            ))
        } else {
            Ok(r)
        }
    })
}

/// Connections held open by idle mode.
pub(crate) struct IdleSet {
    pub(crate) conns: Vec<transport::Held>,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    /// Bytes to write to each connection to close it politely.
    pub(crate) goodbye: Vec<u8>,
}

impl IdleSet {
    fn opened(&self) -> usize {
        self.conns.len()
    }

    /// Connections the broker has not closed (a zero-byte read means it has).
    async fn still_open(&mut self) -> usize {
        let mut open = 0;
        for c in &mut self.conns {
            open += usize::from(c.still_open().await);
        }
        open
    }

    /// Says goodbye on every connection and drops them.
    async fn close(&mut self) {
        for c in &mut self.conns {
            c.say(&self.goodbye).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.conns.clear();
    }
}

/// Runs handshakes `open(i)` for `0..n`, at most `parallel` at a time.
pub(crate) async fn open_many<F, Fut>(
    n: usize,
    parallel: usize,
    goodbye: Vec<u8>,
    open: F,
) -> IdleSet
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<transport::Held>> + Send + 'static,
{
    let mut set = IdleSet {
        conns: Vec::with_capacity(n),
        failed: 0,
        first_error: None,
        goodbye,
    };
    let mut running = JoinSet::new();
    let mut next = 0;
    while next < n || !running.is_empty() {
        while next < n && running.len() < parallel {
            running.spawn(open(next));
            next += 1;
        }
        match running.join_next().await {
            Some(Ok(Ok(c))) => set.conns.push(c),
            Some(Ok(Err(e))) => {
                set.failed += 1;
                set.first_error.get_or_insert_with(|| format!("{e:#}"));
                // A broker that refuses or stalls one connection (out of file descriptors,
                // say) will do so for the rest: stop opening more instead of waiting out the
                // timeout for each of thousands.
                next = n;
            }
            Some(Err(e)) => {
                set.failed += 1;
                set.first_error.get_or_insert_with(|| e.to_string());
                next = n;
            }
            None => break,
        }
    }
    set
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Plan> {
        let mut v = vec!["perf"];
        v.extend_from_slice(args);
        let o = Options::try_parse_from(v)?;
        Plan::new(&o)
    }

    #[test]
    fn defaults_match_the_command_line() {
        assert_eq!(
            Options::default(),
            Options::try_parse_from(["perf"]).unwrap()
        );
        let p = parse(&[]).unwrap();
        assert_eq!(p.kind, Kind::Amqp);
        assert_eq!(p.duration, Some(Duration::from_secs(10)));
        assert_eq!((p.producers, p.consumers, p.queues, p.size), (1, 1, 1, 16));
        assert_eq!(p.window, None);
    }

    #[test]
    fn perftest_style_options() {
        let p = parse(&[
            "--uri",
            "amqp://u:p@h:1/v",
            "-x",
            "4",
            "-y",
            "4",
            "--queues",
            "4",
            "--size",
            "1024",
            "--confirm",
            "256",
            "--prefetch",
            "100",
            "--multi-ack-every",
            "10",
            "--persistent",
            "--rate",
            "5000",
            "--count",
            "1000",
        ])
        .unwrap();
        assert_eq!(
            (p.producers, p.consumers, p.queues, p.size),
            (4, 4, 4, 1024)
        );
        assert_eq!(
            (p.window, p.prefetch, p.multi_ack_every),
            (Some(256), 100, Some(10))
        );
        assert!(p.persistent);
        assert_eq!(
            (p.rate, p.count, p.duration),
            (Some(5000.0), Some(1000), None)
        );
        assert_eq!(p.queue_name(3), "perf-3");
        assert_eq!(p.amqp.unwrap().vhost, "v");
    }

    #[test]
    fn mqtt_options() {
        let p = parse(&["--uri", "mqtt://h:1884", "--qos", "1"]).unwrap();
        assert_eq!((p.kind, p.qos, p.window), (Kind::Mqtt, 1, Some(256)));
        let p = parse(&[
            "--mode",
            "mqtt-to-amqp",
            "--uri",
            "mqtt://h",
            "--amqp-uri",
            "amqp://h",
            "--qos",
            "1",
        ])
        .unwrap();
        assert_eq!(p.kind, Kind::MqttToAmqp);
        assert_eq!(p.topic(2), "perf/2");
    }

    #[test]
    fn bad_combinations_are_refused() {
        for bad in [
            &["--uri", "mqtt://h", "--persistent"][..],
            &["--uri", "amqp://h", "--qos", "1"],
            &["--uri", "mqtt://h", "--qos", "3"],
            &["--uri", "mqtt://h", "--confirm", "10"],
            &["--mode", "mqtt-to-amqp", "--uri", "mqtt://h"],
            &[
                "--mode",
                "mqtt-to-amqp",
                "--uri",
                "amqp://h",
                "--amqp-uri",
                "amqp://h",
            ],
            &["--amqp-uri", "amqp://h"],
            &["--queues", "0"],
            &["--queues", "2", "--queue-pattern", "fixed"],
            &["--rate", "-1"],
            &["--duration", "0"],
            &["--count", "0"],
            &["--confirm", "0"],
            &["--auto-ack", "--multi-ack-every", "5"],
            &["--producers", "0", "--consumers", "0"],
            &["--uri", "mqtt://h", "--prefetch", "5"],
            &["--size", "notanumber"],
            &["--uri", "amqps://h"],
            &["--uri", "amqp://h", "--tls-insecure"],
            &["--uri", "ws://h", "--tls-ca", "/nonexistent.pem"],
            &["--uri", "mqtts://h", "--tls-ca", "/nonexistent.pem"],
            &["--uri", "ws://h", "--mode", "amqp"],
            &["--uri", "mqtt://h", "--queue-arg", "x-max-priority=10"],
            &["--queue-arg", "x-max-priority"],
            &["--queue-arg", "=10"],
            &["--queue-arg", "x-max-length=99999999999"],
            &["--priority-spread", "0"],
            &["--priority-spread", "257"],
            &["--uri", "mqtt://h", "--priority-spread", "10"],
            &["--rejecters", "1"],
            &["--consume-queue", ""],
            &["--consume-queue", "perf-0"],
            &["--uri", "mqtt://h", "--consume-queue", "dl"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn queue_arguments_priorities_and_dead_letter_options() {
        let p = parse(&[
            "--queue-arg",
            "x-max-priority=100",
            "--queue-arg",
            "x-dead-letter-exchange=",
            "--queue-arg",
            "x-dead-letter-routing-key=perf-dl",
            "--queue-arg",
            "x-message-ttl=-0",
            "--queue-arg",
            "x-overflow=reject-publish-dlx",
            "--priority-spread",
            "10",
            "--consume-queue",
            "perf-dl",
            "--rejecters",
            "2",
            "-x",
            "2",
        ])
        .unwrap();
        let args: Vec<_> = p
            .queue_args
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        assert_eq!(
            args,
            [
                ("x-max-priority", &FieldValue::LongInt(100)),
                (
                    "x-dead-letter-exchange",
                    &FieldValue::LongString(Bytes::new())
                ),
                (
                    "x-dead-letter-routing-key",
                    &FieldValue::LongString(Bytes::from_static(b"perf-dl"))
                ),
                ("x-message-ttl", &FieldValue::LongInt(0)),
                (
                    "x-overflow",
                    &FieldValue::LongString(Bytes::from_static(b"reject-publish-dlx"))
                ),
            ]
        );
        assert_eq!(p.priority_spread, Some(10));
        assert_eq!(
            (p.consume_queue.as_deref(), p.rejecters),
            (Some("perf-dl"), 2)
        );
        // Everything published reaches the one consumed queue.
        assert_eq!(p.expected(&[10, 20]), 30);
    }

    #[test]
    fn tls_and_websocket_uris() {
        let p = parse(&["--uri", "amqps://h", "--tls-insecure"]).unwrap();
        assert_eq!(p.kind, Kind::Amqp);
        assert!(p.tls.is_some());
        let p = parse(&["--uri", "wss://h:1/x", "--tls-insecure", "--qos", "1"]).unwrap();
        assert_eq!(p.kind, Kind::Mqtt);
        assert!(p.tls.is_some());
        // Plain WebSocket needs no TLS configuration.
        let p = parse(&["--uri", "ws://h"]).unwrap();
        assert!(p.tls.is_none());
        // A TLS consumer side is enough to need one.
        let p = parse(&[
            "--mode",
            "mqtt-to-amqp",
            "--uri",
            "ws://h",
            "--amqp-uri",
            "amqps://h",
            "--tls-insecure",
        ])
        .unwrap();
        assert!(p.tls.is_some());
    }

    #[test]
    fn expected_deliveries_follow_routing() {
        let mut p = parse(&["-x", "3", "-y", "1", "--queues", "2"]).unwrap();
        // Producers 0 and 2 publish to queue 0 (consumed), producer 1 to queue 1 (no consumer).
        assert_eq!(p.expected(&[10, 20, 30]), 40);
        p.kind = Kind::Mqtt;
        p.consumers = 4;
        // Topic 0 has subscribers 0 and 2, topic 1 has 1 and 3: every message twice.
        assert_eq!(p.expected(&[10, 20, 30]), 120);
    }

    #[test]
    fn window_refills_with_hysteresis() {
        let mut r = Refill::default();
        assert!(r.ready(0, 16));
        assert!(r.ready(15, 16));
        assert!(!r.ready(16, 16));
        assert!(!r.ready(15, 16)); // full: wait until 2 (an eighth) are free
        assert!(r.ready(14, 16));
        assert!(r.ready(15, 16));
        let mut one = Refill::default();
        assert!(!one.ready(1, 1));
        assert!(one.ready(0, 1));
    }

    #[test]
    fn stamps_round_trip() {
        let mut body = vec![0u8; 16];
        write_stamp(&mut body, 7);
        let now = stats::now_ns() + 5;
        assert!(matches!(read_stamp(&body, 7, now), Stamp::Latency(_)));
        assert_eq!(read_stamp(&body, 8, now), Stamp::Foreign);
        assert_eq!(read_stamp(&body[..11], 7, now), Stamp::Unstamped);
    }

    #[test]
    fn consumed_batches_update_counters_and_histograms() {
        let plan = parse(&[]).unwrap();
        let shared = Shared {
            published: vec![AtomicU64::new(0)],
            confirmed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            producer_done_ns: vec![AtomicU64::new(0)],
            first_consume_ns: AtomicU64::new(u64::MAX),
            last_consume_ns: AtomicU64::new(0),
            latency: vec![Mutex::new(stats::new_histogram().unwrap())],
            stop: CancellationToken::new(),
            plan,
        };
        shared.consumed_batch(0, 3, 1, &[1000, 2000, 3000]);
        assert_eq!(shared.consumed.load(Ordering::Relaxed), 3);
        assert_eq!(shared.latency[0].lock().len(), 3);
    }
}
