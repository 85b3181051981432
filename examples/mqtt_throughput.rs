//! MQTT 3.1.1 throughput client: one publisher and one subscriber, each on its own TCP
//! connection and its own OS thread (with a single-threaded tokio runtime), against any MQTT
//! 3.1.1 broker (warren, Mosquitto, `RabbitMQ`'s MQTT plugin).
//!
//! The subscriber connects first (clean session, keep alive off) and subscribes to a topic
//! unique to the run with QoS `--qos`; once the SUBACK is in, the publisher publishes
//! `--count` messages of `--size` bytes to that topic with QoS `--qos`. Publishes are
//! pipelined: many packets are encoded into one buffer and written with one `write_all` per
//! batch (`--batch-bytes`). With QoS 1 at most `--inflight` PUBLISHes are left unacknowledged
//! at any time and the run counts the broker's PUBACKs; the subscriber PUBACKs every QoS 1
//! delivery, all the acks for one socket read in a single write.
//!
//! The client is hand-rolled on a raw [`TcpStream`] and the project's sans-IO `warren_mqtt`
//! codec so that it is not the bottleneck; to show that, it reports the CPU time each side used
//! (per thread, from `/proc/thread-self/schedstat`) as a share of its wall time. The PUBLISH
//! packet is encoded once by the codec and then copied per message with only its packet id
//! and sequence number patched in.
//!
//! Every payload of 8 bytes or more starts with the message's sequence number (big endian),
//! so the subscriber counts distinct messages, duplicates and out-of-order deliveries exactly.
//!
//! Usage:
//!
//! ```text
//! cargo run --release --example mqtt_throughput -- --addr 127.0.0.1:1883 --count 200000 --size 64
//! cargo run --release --example mqtt_throughput -- --qos 1 --inflight 256 --count 100000
//! ```
//!
//! `scripts/mqtt_compare.sh` runs it against warren, Mosquitto and `RabbitMQ` and prints
//! medians side by side.
//!
//! Rates: `publish_rate` is `count` over the time from the first publish written to the last
//! one written (QoS 1: to the last PUBACK); for QoS 0 that is how fast the broker took the
//! bytes off the socket, so it can exceed the receive rate. `receive_rate` spans the
//! subscriber's first to last message; `overall_rate` is the messages received over
//! `elapsed_s`, the time from the first publish to the last message received;
//! `first_msg_s` is the delay from the first publish to the first message received.
//!
//! Losses: QoS 0 messages may be dropped by a broker, so with QoS 0 the subscriber stops
//! once all `count` arrived or, after the publisher is done, nothing arrived for
//! `--drain-secs` (default 2); `received` and `lost` say how many made it. With QoS 1 every
//! message must arrive: the run waits up to `--idle-timeout` for stragglers and exits with a
//! non-zero status (after printing the report) if any message is missing.
//!
//! Output: a few human-readable lines, then one JSON line:
//! `{"broker_addr":..., "count":..., "size":..., "qos":..., "publish_rate":...,
//! "receive_rate":..., "overall_rate":..., "received":..., "lost":..., ...}`. Any error — a
//! refused CONNACK or SUBACK, a decode error, a closed connection, or no progress for
//! `--idle-timeout` seconds (default 30) — ends the run with a message on stderr and a
//! non-zero exit status.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::timeout;
use warren_mqtt::{
    Codec, Connect, Disconnect, Packet, ProtocolVersion, PubAck, Publish, QoS, Subscribe,
    SubscribeFilter,
};

/// The protocol version of both connections.
const VERSION: ProtocolVersion = ProtocolVersion::V311;
/// Bytes of the sequence number at the start of each payload (when the payload is that big).
const SEQ_LEN: usize = 8;
/// Largest packet id; QoS 1 packet ids cycle through `1..=MAX_PACKET_ID`.
const MAX_PACKET_ID: u64 = u16::MAX as u64;
/// How often a waiting subscriber wakes up to check the drain and idle deadlines.
const POLL: Duration = Duration::from_millis(100);
/// Read timeout of the publisher's PUBACK reader: its write side has the real deadlines.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(about = "MQTT 3.1.1 1-publisher/1-subscriber throughput client")]
struct Args {
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    addr: String,
    /// Number of messages to publish.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Payload size in bytes (8 or more to track sequence numbers).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// QoS of the publishes and of the subscription (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// QoS 1: maximum number of unacknowledged PUBLISHes the publisher keeps in flight.
    #[arg(long, default_value_t = 256)]
    inflight: u64,
    /// Bytes of encoded publishes written per socket write.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,
    /// Fail when nothing arrives (or no write completes) for this many seconds.
    #[arg(long, default_value_t = 30)]
    idle_timeout: u64,
    /// After the publisher is done, stop waiting for missing messages after this many
    /// seconds without one (default: 2 for QoS 0, --idle-timeout for QoS 1).
    #[arg(long)]
    drain_secs: Option<f64>,
    /// Topic to use (default: a topic unique to this run).
    #[arg(long)]
    topic: Option<String>,
    /// User name for CONNECT (none by default).
    #[arg(long)]
    username: Option<String>,
    /// Password for CONNECT (only sent with --username).
    #[arg(long)]
    password: Option<String>,
}

impl Args {
    fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_timeout.max(1))
    }

    fn drain(&self) -> Duration {
        match self.drain_secs {
            Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            _ if self.qos == 0 => Duration::from_secs(2),
            _ => self.idle(),
        }
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "mqtt_throughput: error: QoS 1 messages were lost (see \"lost\" in the report)"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mqtt_throughput: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the publisher thread measured.
struct PublisherReport {
    /// Just before the first publish was written.
    start: Instant,
    /// When the last publish was written (QoS 1: acknowledged).
    done: Instant,
    /// CPU time the publisher thread used between `start` and `done`.
    cpu: Duration,
    /// PUBACKs received (QoS 1).
    acked: u64,
}

/// What the subscriber thread measured.
struct SubscriberReport {
    /// When the subscription was in place (SUBACK received).
    ready: Instant,
    /// First message received (`ready` if none arrived).
    first: Instant,
    /// Last message received (`ready` if none arrived).
    last: Instant,
    /// CPU time the subscriber thread used between `ready` and `last`.
    cpu: Duration,
    /// PUBLISH packets received, duplicates included.
    packets: u64,
    /// Distinct messages received (sequence numbers seen; `packets` for payloads < 8 bytes).
    distinct: u64,
    /// Packets whose sequence number had been seen before.
    duplicates: u64,
    /// Packets with a sequence number lower than the highest seen so far (not duplicates).
    out_of_order: u64,
    /// Payload bytes received.
    bytes: u64,
    /// Deliveries with a QoS other than the subscription's (e.g. downgraded by the broker).
    qos_mismatch: u64,
}

/// A finished side, sent from its thread to `run`.
enum Outcome {
    Publisher(Result<PublisherReport>),
    Subscriber(Result<SubscriberReport>),
}

/// Starts both sides, waits for them, prints the results. `Ok(false)`: QoS 1 messages lost.
fn run(args: &Args) -> Result<bool> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.qos == 1 && !(1..MAX_PACKET_ID).contains(&args.inflight) {
        bail!("--inflight must be between 1 and {}", MAX_PACKET_ID - 1);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let run_id = format!("{}-{nanos}", std::process::id());
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("mqtt-throughput/{run_id}"));
    let (out_tx, out_rx) = mpsc::channel::<Outcome>();
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    // Set by the publisher when it is done; the subscriber's drain deadline starts then.
    let publisher_done: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());

    let sub_args = args.clone();
    let sub_out = out_tx.clone();
    let sub_topic = topic.clone();
    let sub_id = format!("mqtt-tp-sub-{run_id}");
    let sub_done = publisher_done.clone();
    std::thread::Builder::new()
        .name("subscriber".into())
        .spawn(move || {
            let r = block_on(subscribe(
                &sub_args, &sub_id, &sub_topic, ready_tx, &sub_done,
            ));
            // The receiver only goes away when `run` has already returned.
            let _ = sub_out.send(Outcome::Subscriber(r));
        })
        .context("spawning subscriber thread")?;
    let pub_args = args.clone();
    let pub_id = format!("mqtt-tp-pub-{run_id}");
    std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let r = block_on(publish(&pub_args, &pub_id, &topic, ready_rx));
            if let Ok(p) = &r {
                let _ = publisher_done.set(p.done);
            }
            let _ = out_tx.send(Outcome::Publisher(r));
        })
        .context("spawning publisher thread")?;

    let mut publisher = None;
    let mut subscriber = None;
    while publisher.is_none() || subscriber.is_none() {
        let outcome = out_rx
            .recv()
            .map_err(|_| anyhow!("a worker thread exited without reporting"))?;
        let failed = match outcome {
            Outcome::Publisher(Ok(p)) => {
                publisher = Some(p);
                None
            }
            Outcome::Subscriber(Ok(s)) => {
                subscriber = Some(s);
                None
            }
            Outcome::Publisher(Err(e)) => Some(e.context("publisher")),
            Outcome::Subscriber(Err(e)) => Some(e.context("subscriber")),
        };
        if let Some(err) = failed {
            // The other side usually fails right after (or is the real cause): report it too.
            if let Ok(Outcome::Publisher(Err(e)) | Outcome::Subscriber(Err(e))) =
                out_rx.recv_timeout(Duration::from_millis(500))
            {
                eprintln!("mqtt_throughput: also: {e:#}");
            }
            return Err(err);
        }
    }
    let (Some(p), Some(s)) = (publisher, subscriber) else {
        bail!("internal: missing report");
    };
    print_report(args, &p, &s);
    Ok(args.qos == 0 || s.distinct == args.count)
}

/// Runs `fut` to completion on a fresh single-threaded runtime.
fn block_on<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building tokio runtime")?
        .block_on(fut)
}

/// Prints the human-readable summary and the final JSON line.
fn print_report(args: &Args, p: &PublisherReport, s: &SubscriberReport) {
    let n = args.count as f64;
    let received = s.distinct;
    let lost = args.count.saturating_sub(received);
    let publish_s = p.done.duration_since(p.start).as_secs_f64();
    let receive_s = s.last.duration_since(s.first).as_secs_f64();
    let elapsed_s = s.last.saturating_duration_since(p.start).as_secs_f64();
    // Delay from the first publish to the first delivery (0 if, oddly, it came first).
    let first_msg_s = s.first.saturating_duration_since(p.start).as_secs_f64();
    let publish_rate = rate(n, publish_s);
    // k packets span k - 1 inter-arrival gaps between the first and the last.
    let receive_rate = if s.packets > 1 {
        rate((s.packets - 1) as f64, receive_s)
    } else {
        0.0
    };
    let overall_rate = rate(received as f64, elapsed_s);
    let subscriber_wall = s.last.duration_since(s.ready).as_secs_f64();
    let publisher_cpu_pct = pct(p.cpu.as_secs_f64(), publish_s);
    let subscriber_cpu_pct = pct(s.cpu.as_secs_f64(), subscriber_wall);
    // Rate each side could sustain if it had a whole core to itself.
    let publisher_capacity = rate(n, p.cpu.as_secs_f64());
    let subscriber_capacity = rate(s.packets as f64, s.cpu.as_secs_f64());
    let mode = if args.qos == 0 {
        "QoS 0".to_string()
    } else {
        format!("QoS 1 (publisher window {})", args.inflight)
    };
    println!(
        "broker {} | MQTT 3.1.1 | {} msgs x {} B | {mode} | 1 publisher, 1 subscriber",
        args.addr, args.count, args.size
    );
    println!("publish : {publish_rate:>12.0} msg/s  ({publish_s:.3} s)");
    println!(
        "receive : {receive_rate:>12.0} msg/s  (first->last {receive_s:.3} s; first after {first_msg_s:.3} s)"
    );
    println!(
        "overall : {overall_rate:>12.0} msg/s  (first publish -> last received {elapsed_s:.3} s)"
    );
    println!(
        "received: {received} of {} ({lost} lost, {} duplicates, {} out of order{}{})",
        args.count,
        s.duplicates,
        s.out_of_order,
        if args.qos == 1 {
            format!(", {} PUBACKs to the publisher", p.acked)
        } else {
            String::new()
        },
        if s.qos_mismatch > 0 {
            format!(", {} delivered with another QoS", s.qos_mismatch)
        } else {
            String::new()
        }
    );
    println!(
        "client CPU: publisher {publisher_cpu_pct:.0}% of a core ({:.3} s, ~{publisher_capacity:.0} msg/s if CPU-bound), \
         subscriber {subscriber_cpu_pct:.0}% ({:.3} s, ~{subscriber_capacity:.0} msg/s if CPU-bound)",
        p.cpu.as_secs_f64(),
        s.cpu.as_secs_f64()
    );
    println!(
        "{{\"broker_addr\":\"{}\",\"count\":{},\"size\":{},\"qos\":{},\"inflight\":{},\
         \"publish_rate\":{publish_rate:.1},\"receive_rate\":{receive_rate:.1},\
         \"overall_rate\":{overall_rate:.1},\"elapsed_s\":{elapsed_s:.4},\"first_msg_s\":{first_msg_s:.4},\
         \"received\":{received},\"lost\":{lost},\"duplicates\":{},\"out_of_order\":{},\
         \"packets\":{},\"bytes_received\":{},\"pubacks\":{},\
         \"publisher_cpu_pct\":{publisher_cpu_pct:.1},\"subscriber_cpu_pct\":{subscriber_cpu_pct:.1}}}",
        json_escape(&args.addr),
        args.count,
        args.size,
        args.qos,
        args.inflight,
        s.duplicates,
        s.out_of_order,
        s.packets,
        s.bytes,
        p.acked,
    );
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// Escapes `s` for use inside a JSON string literal.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// CPU time (user + system) used so far by the calling thread.
///
/// Reads `/proc/thread-self/schedstat` (nanoseconds); falls back to the utime + stime ticks
/// of `/proc/thread-self/stat` (assuming the usual 100 Hz clock tick); zero if neither exists.
fn thread_cpu_time() -> Duration {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            if ns > 0 {
                return Duration::from_nanos(ns);
            }
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/stat") {
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        if let Some((_, rest)) = s.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            return Duration::from_millis((tick(11) + tick(12)) * 10);
        }
    }
    Duration::ZERO
}

/// Reads server → client packets from one half of a connection.
struct PacketReader<R> {
    io: R,
    buf: BytesMut,
    codec: Codec,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    fn new(io: R, max_packet: usize) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(256 * 1024),
            codec: Codec::new_client(VERSION, max_packet),
        }
    }

    /// The next packet already buffered, if any.
    fn decode(&mut self) -> Result<Option<Packet>> {
        self.codec
            .decode(&mut self.buf)
            .context("decoding a packet from the broker")
    }

    /// Reads more bytes, waiting at most `wait`. `Ok(false)`: nothing arrived in time.
    async fn fill(&mut self, wait: Duration) -> Result<bool> {
        if self.buf.capacity() - self.buf.len() < 64 * 1024 {
            self.buf.reserve(256 * 1024);
        }
        match timeout(wait, self.io.read_buf(&mut self.buf)).await {
            Err(_) => Ok(false),
            Ok(r) => {
                if r.context("reading from broker")? == 0 {
                    bail!("broker closed the TCP connection");
                }
                Ok(true)
            }
        }
    }

    /// The next packet; errors on EOF, decode errors and `idle` without any bytes arriving.
    async fn next(&mut self, idle: Duration) -> Result<Packet> {
        loop {
            if let Some(p) = self.decode()? {
                return Ok(p);
            }
            if !self.fill(idle).await? {
                bail!("no data from broker for {idle:?}");
            }
        }
    }
}

/// Encodes `packets` and writes them with one write.
async fn send(w: &mut OwnedWriteHalf, packets: &[Packet]) -> Result<()> {
    let mut buf = BytesMut::with_capacity(256);
    for p in packets {
        Codec::encode_with(VERSION, p, &mut buf)
            .with_context(|| format!("encoding {}", p.name()))?;
    }
    w.write_all(&buf).await.context("writing to broker")
}

/// An open MQTT connection.
struct Conn {
    reader: PacketReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// Connects (TCP, CONNECT with clean session and keep alive off) and waits for CONNACK.
async fn open(args: &Args, client_id: &str) -> Result<Conn> {
    let idle = args.idle();
    let stream = timeout(idle, TcpStream::connect(&args.addr))
        .await
        .map_err(|_| anyhow!("connecting to {}: timed out", args.addr))?
        .with_context(|| format!("connecting to {}", args.addr))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (r, mut writer) = stream.into_split();
    let max_packet = (args.size + 64 * 1024).max(1024 * 1024);
    let mut reader = PacketReader::new(r, max_packet);
    let connect = Connect {
        protocol: VERSION,
        client_id: client_id.to_string(),
        clean_start: true,
        keep_alive: 0,
        username: args.username.clone(),
        password: args
            .username
            .as_ref()
            .and(args.password.as_ref())
            .map(|p| Bytes::from(p.clone().into_bytes())),
        ..Default::default()
    };
    send(&mut writer, &[Packet::Connect(connect)]).await?;
    match reader.next(idle).await.context("waiting for CONNACK")? {
        Packet::ConnAck(c) if c.reason == 0 => {}
        Packet::ConnAck(c) => bail!(
            "broker refused the connection: CONNACK reason 0x{:02x}",
            c.reason
        ),
        p => bail!("expected CONNACK, got {}", p.name()),
    }
    Ok(Conn { reader, writer })
}

/// Best-effort DISCONNECT, so brokers don't log an abrupt disconnect.
async fn disconnect(writer: &mut OwnedWriteHalf) {
    let _ = send(writer, &[Packet::Disconnect(Disconnect::default())]).await;
    let _ = writer.shutdown().await;
}

/// Which sequence numbers the subscriber has seen.
struct SeqTracker {
    count: u64,
    seen: Vec<u64>,
    highest: Option<u64>,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
}

impl SeqTracker {
    fn new(count: u64) -> Self {
        Self {
            count,
            seen: vec![0; usize::try_from(count.div_ceil(64)).unwrap_or(0)],
            highest: None,
            distinct: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    /// Records `seq`; errors when it is outside `0..count` (not one of ours).
    fn record(&mut self, seq: u64) -> Result<()> {
        let word = usize::try_from(seq / 64)
            .ok()
            .filter(|_| seq < self.count)
            .and_then(|i| self.seen.get_mut(i))
            .ok_or_else(|| anyhow!("received sequence number {seq}, beyond --count"))?;
        let bit = 1u64 << (seq % 64);
        if *word & bit != 0 {
            self.duplicates += 1;
            return Ok(());
        }
        *word |= bit;
        self.distinct += 1;
        match self.highest {
            Some(h) if seq < h => self.out_of_order += 1,
            _ => self.highest = Some(seq),
        }
        Ok(())
    }
}

/// Subscriber side: subscribes, receives (and QoS 1: acknowledges) deliveries, measures.
async fn subscribe(
    args: &Args,
    client_id: &str,
    topic: &str,
    ready_tx: oneshot::Sender<()>,
    publisher_done: &OnceLock<Instant>,
) -> Result<SubscriberReport> {
    let Conn {
        mut reader,
        mut writer,
    } = open(args, client_id).await?;
    let idle = args.idle();
    let drain = args.drain();
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: topic.to_string(),
            qos: args.qos(),
            ..Default::default()
        }],
        ..Default::default()
    };
    send(&mut writer, &[Packet::Subscribe(sub)]).await?;
    match reader.next(idle).await.context("waiting for SUBACK")? {
        Packet::SubAck(s) => match s.reasons.first().copied() {
            Some(code) if code == args.qos => {}
            Some(code) if code < 0x80 => {
                eprintln!(
                    "mqtt_throughput: warning: broker granted QoS {code}, asked for {}",
                    args.qos
                );
            }
            Some(code) => bail!("broker refused the subscription: SUBACK code 0x{code:02x}"),
            None => bail!("SUBACK without a return code"),
        },
        p => bail!("expected SUBACK, got {}", p.name()),
    }
    let ready = Instant::now();
    let cpu0 = thread_cpu_time();
    ready_tx
        .send(())
        .map_err(|_| anyhow!("publisher went away before the subscription was ready"))?;

    let track = args.size >= SEQ_LEN;
    let mut seqs = SeqTracker::new(if track { args.count } else { 0 });
    let mut packets = 0u64;
    let mut bytes = 0u64;
    let mut qos_mismatch = 0u64;
    let mut first = None;
    let mut last = ready;
    let mut last_progress = ready;
    let mut acks = BytesMut::with_capacity(64 * 1024);
    loop {
        acks.clear();
        let before = packets;
        while let Some(packet) = reader.decode()? {
            match packet {
                Packet::Publish(p) => {
                    packets += 1;
                    bytes += p.payload.len() as u64;
                    if p.qos != args.qos() {
                        qos_mismatch += 1;
                    }
                    if track {
                        let seq = p
                            .payload
                            .get(..SEQ_LEN)
                            .and_then(|b| <[u8; SEQ_LEN]>::try_from(b).ok())
                            .map(u64::from_be_bytes)
                            .ok_or_else(|| {
                                anyhow!(
                                    "payload of {} bytes, expected {}",
                                    p.payload.len(),
                                    args.size
                                )
                            })?;
                        seqs.record(seq)?;
                    }
                    if p.qos == QoS::AtLeastOnce {
                        let ack = PubAck {
                            packet_id: p.packet_id,
                            ..Default::default()
                        };
                        Codec::encode_with(VERSION, &Packet::PubAck(ack), &mut acks)
                            .context("encoding PUBACK")?;
                    } else if p.qos == QoS::ExactlyOnce {
                        bail!("QoS 2 delivery on a QoS {} subscription", args.qos);
                    }
                }
                p => bail!("unexpected {} from the broker", p.name()),
            }
        }
        let distinct = if track { seqs.distinct } else { packets };
        let now = Instant::now();
        if packets > before {
            first.get_or_insert(now);
            last = now;
            last_progress = now;
        }
        if !acks.is_empty() {
            timeout(idle, writer.write_all(&acks))
                .await
                .map_err(|_| anyhow!("broker accepted no PUBACKs for {idle:?}"))?
                .context("writing PUBACKs")?;
        }
        if distinct >= args.count {
            break;
        }
        if let Some(&done) = publisher_done.get() {
            // The publisher has finished: whatever is still missing gets `drain` to show up.
            if now.saturating_duration_since(last_progress.max(done)) >= drain {
                break;
            }
        } else if now.duration_since(last_progress) >= idle {
            bail!(
                "no message for {idle:?} while the publisher was still publishing \
                 (received {distinct} of {})",
                args.count
            );
        }
        reader.fill(POLL).await?;
    }
    let cpu = thread_cpu_time().saturating_sub(cpu0);
    disconnect(&mut writer).await;
    Ok(SubscriberReport {
        ready,
        first: first.unwrap_or(ready),
        last,
        cpu,
        packets,
        distinct: if track { seqs.distinct } else { packets },
        duplicates: seqs.duplicates,
        out_of_order: seqs.out_of_order,
        bytes,
        qos_mismatch,
    })
}

/// One PUBLISH packet encoded by the codec, copied per message with the packet id and the
/// sequence number patched in.
struct PublishTemplate {
    bytes: Vec<u8>,
    /// Offset of the packet id (QoS 1 only).
    packet_id_at: Option<usize>,
    /// Offset of the payload.
    payload_at: usize,
}

impl PublishTemplate {
    fn new(topic: &str, qos: QoS, size: usize) -> Result<Self> {
        let publish = Publish {
            qos,
            topic: topic.to_string(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            payload: Bytes::from(vec![b'x'; size]),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        Codec::encode_with(VERSION, &Packet::Publish(publish), &mut buf)
            .context("encoding PUBLISH")?;
        let payload_at = buf.len() - size;
        // MQTT 3.1.1: the packet id comes right before the payload.
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| payload_at - 2);
        let t = Self {
            bytes: buf.to_vec(),
            packet_id_at,
            payload_at,
        };
        t.check(topic, qos, size)?;
        Ok(t)
    }

    /// Appends the packet for sequence number `seq` with packet id `packet_id`.
    fn append(&self, seq: u64, packet_id: u16, out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let packet = &mut out[start..];
        if let Some(at) = self.packet_id_at {
            packet[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let payload = &mut packet[self.payload_at..];
        if payload.len() >= SEQ_LEN {
            payload[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
        }
    }

    /// Decodes a patched copy to make sure the offsets are right.
    fn check(&self, topic: &str, qos: QoS, size: usize) -> Result<()> {
        let seq = 0x0102_0304_0506_0708u64;
        let mut buf = BytesMut::new();
        self.append(seq, 0xBEEF, &mut buf);
        let decoded = Codec::new_client(VERSION, buf.len() + 1)
            .decode(&mut buf)
            .context("decoding our own PUBLISH")?;
        let Some(Packet::Publish(p)) = decoded else {
            bail!("our own PUBLISH did not decode as one");
        };
        let want_id = if qos == QoS::AtMostOnce { 0 } else { 0xBEEF };
        let seq_ok = size < SEQ_LEN || p.payload.get(..SEQ_LEN) == Some(&seq.to_be_bytes()[..]);
        if p.topic != topic
            || p.qos != qos
            || p.packet_id != want_id
            || p.payload.len() != size
            || !seq_ok
        {
            bail!("patched PUBLISH template decodes wrongly: {p:?}");
        }
        Ok(())
    }
}

/// Packet ids of the QoS 1 publishes awaiting a PUBACK.
struct Inflight {
    pending: Vec<bool>,
    outstanding: u64,
    acked: u64,
}

impl Inflight {
    fn new() -> Self {
        Self {
            pending: vec![false; usize::from(u16::MAX) + 1],
            outstanding: 0,
            acked: 0,
        }
    }

    fn sent(&mut self, id: u16) {
        self.pending[usize::from(id)] = true;
        self.outstanding += 1;
    }

    /// Records a PUBACK; errors for a packet id that is not in flight.
    fn ack(&mut self, id: u16) -> Result<()> {
        let slot = &mut self.pending[usize::from(id)];
        if !*slot {
            bail!("PUBACK for packet id {id}, which is not in flight");
        }
        *slot = false;
        self.outstanding -= 1;
        self.acked += 1;
        Ok(())
    }
}

/// The packet id of the `seq`-th QoS 1 publish: cycles through 1..=65535.
fn packet_id(seq: u64) -> u16 {
    u16::try_from(seq % MAX_PACKET_ID + 1).unwrap_or(1)
}

/// Publisher side: waits for the subscription, publishes `count` messages, measures.
async fn publish(
    args: &Args,
    client_id: &str,
    topic: &str,
    ready_rx: oneshot::Receiver<()>,
) -> Result<PublisherReport> {
    let Conn {
        mut reader,
        mut writer,
    } = open(args, client_id).await?;
    let qos = args.qos();
    let template = PublishTemplate::new(topic, qos, args.size)?;
    ready_rx
        .await
        .map_err(|_| anyhow!("subscriber failed before its subscription was ready"))?;

    let inflight = RefCell::new(Inflight::new());
    let progress = Notify::new();
    let idle = args.idle();
    let read_failed = Cell::new(false);

    let report = {
        // Reads the publisher connection: PUBACKs (anything else is an error).
        let read_side = async {
            let r: Result<()> = async {
                loop {
                    match reader.next(FOREVER).await? {
                        Packet::PubAck(a) => {
                            inflight.borrow_mut().ack(a.packet_id)?;
                            progress.notify_one();
                        }
                        p => bail!("unexpected {} on the publisher connection", p.name()),
                    }
                }
            }
            .await;
            read_failed.set(true);
            r
        };

        let write_side = async {
            let cpu0 = thread_cpu_time();
            let start = Instant::now();
            let mut buf = BytesMut::with_capacity(args.batch_bytes + template.bytes.len());
            let mut published = 0u64;
            while published < args.count {
                let mut allowed = args.count - published;
                if qos == QoS::AtLeastOnce {
                    let outstanding = loop {
                        let outstanding = inflight.borrow().outstanding;
                        if outstanding < args.inflight {
                            break outstanding;
                        }
                        timeout(idle, progress.notified()).await.map_err(|_| {
                            anyhow!("no PUBACK for {idle:?} ({published} published)")
                        })?;
                    };
                    allowed = allowed.min(args.inflight - outstanding);
                }
                buf.clear();
                let mut n = 0u64;
                while n < allowed && (n == 0 || buf.len() < args.batch_bytes) {
                    let seq = published + n;
                    let id = packet_id(seq);
                    template.append(seq, id, &mut buf);
                    if qos == QoS::AtLeastOnce {
                        inflight.borrow_mut().sent(id);
                    }
                    n += 1;
                }
                timeout(idle, writer.write_all(&buf))
                    .await
                    .map_err(|_| anyhow!("broker accepted no data for {idle:?}"))?
                    .context("writing publishes")?;
                published += n;
            }
            if qos == QoS::AtLeastOnce {
                while inflight.borrow().outstanding > 0 {
                    let acked = inflight.borrow().acked;
                    timeout(idle, progress.notified()).await.map_err(|_| {
                        anyhow!(
                            "no PUBACK for {idle:?} ({acked} of {} acknowledged)",
                            args.count
                        )
                    })?;
                }
            }
            let done = Instant::now();
            let cpu = thread_cpu_time().saturating_sub(cpu0);
            let acked = inflight.borrow().acked;
            Ok::<_, anyhow::Error>(PublisherReport {
                start,
                done,
                cpu,
                acked,
            })
        };

        tokio::select! {
            r = write_side => r?,
            r = read_side => {
                let e = r.err().unwrap_or_else(|| anyhow!("PUBACK reader stopped"));
                return Err(e.context("publisher connection"));
            }
        }
    };
    if !read_failed.get() {
        disconnect(&mut writer).await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{json_escape, packet_id, Inflight, PublishTemplate, SeqTracker};
    use warren_mqtt::QoS;

    #[test]
    fn templates_decode_with_patched_ids_and_sequence_numbers() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for size in [0, 7, 8, 64, 300] {
                assert!(
                    PublishTemplate::new("a/b", qos, size).is_ok(),
                    "{qos:?} {size}"
                );
            }
        }
    }

    #[test]
    fn seq_tracker_counts_duplicates_and_reordering() {
        let mut t = SeqTracker::new(130);
        for s in [0, 1, 5, 3, 3, 129] {
            assert!(t.record(s).is_ok());
        }
        assert!(t.record(130).is_err());
        assert_eq!((t.distinct, t.duplicates, t.out_of_order), (5, 1, 1));
    }

    #[test]
    fn packet_ids_cycle_and_acks_are_checked() {
        assert_eq!(packet_id(0), 1);
        assert_eq!(packet_id(65_534), 65_535);
        assert_eq!(packet_id(65_535), 1);
        let mut f = Inflight::new();
        f.sent(7);
        assert!(f.ack(8).is_err());
        assert!(f.ack(7).is_ok());
        assert!(f.ack(7).is_err());
        assert_eq!((f.outstanding, f.acked), (0, 1));
    }

    #[test]
    fn json_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
