//! AMQP 0-9-1 throughput client: one producer and one consumer, each on its own TCP connection
//! and its own OS thread (with a single-threaded tokio runtime), against any AMQP 0-9-1 broker
//! (warren or `RabbitMQ`).
//!
//! The consumer declares a uniquely named, auto-delete queue and consumes it with
//! `no_ack = true`; the producer publishes `--count` messages of `--size` bytes to the default
//! exchange with the queue name as routing key. Publishes are pipelined: many frames are encoded
//! into one buffer and written with one `write_all` per batch (`--batch-bytes`). With
//! `--confirm` the channel is put in confirm mode and at most `--window` publishes are left
//! unconfirmed at any time; `--persistent` publishes with `delivery_mode = 2` to a durable queue.
//!
//! The client is hand-rolled on a raw [`TcpStream`] and the project's sans-IO `warren_amqp`
//! codec so that it is not the bottleneck; to show that, it reports the CPU time each side used
//! (per thread, from `/proc/thread-self/schedstat`) as a share of its wall time.
//!
//! Usage:
//!
//! ```text
//! cargo run --release --example amqp_throughput -- --addr 127.0.0.1:5672 --count 200000 --size 16
//! cargo run --release --example amqp_throughput -- --confirm --persistent --size 1024
//! ```
//!
//! `scripts/throughput.sh` runs it against a freshly started warren and against RabbitMQ and
//! prints medians side by side.
//!
//! Rates: `publish_rate` is `count` over the time from the first publish written to the last
//! one written (with `--confirm`: to the last one confirmed); without confirms that is how fast
//! the broker took the bytes off the socket, so it can exceed the consume rate.
//! `consume_rate` spans the consumer's first to last message; `overall_rate` and `elapsed_s`
//! span the first publish to the last message consumed; `first_msg_s` is the delay from the
//! first publish to the first message consumed.
//!
//! Output: a few human-readable lines, then one JSON line:
//! `{"broker_addr":..., "count":..., "size":..., "publish_rate":..., "consume_rate":...,
//! "elapsed_s":..., ...}`. Any error — a `connection.close` or `channel.close` from the broker,
//! a decode error, or no progress for `--idle-timeout` seconds — ends the run with a message on
//! stderr and a non-zero exit status.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::timeout;
use warren_amqp::constants::PROTOCOL_HEADER;
use warren_amqp::frame::{self, Frame};
use warren_amqp::method::{
    self, BasicConsume, ChannelOpen, ConfirmSelect, ConnectionClose, ConnectionOpen,
    ConnectionStartOk, ConnectionTuneOk, Method, QueueDeclare, QueueDelete,
};
use warren_amqp::properties::{BasicProperties, ContentHeader};
use warren_amqp::table::{FieldTable, FieldValue};

/// The one channel both connections use.
const CHANNEL: u16 = 1;
/// `basic` class id, for content headers.
const BASIC_CLASS: u16 = 60;
/// Largest frame accepted before `connection.tune` has told us the negotiated size.
const PRE_TUNE_FRAME_MAX: u32 = 128 * 1024;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(about = "AMQP 0-9-1 1-producer/1-consumer throughput client")]
struct Args {
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:5672")]
    addr: String,
    /// Number of messages to publish and consume.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Put the producer's channel in confirm mode (confirm.select).
    #[arg(long)]
    confirm: bool,
    /// Maximum number of unconfirmed publishes in flight with --confirm.
    #[arg(long, default_value_t = 1024)]
    window: u64,
    /// Publish persistent messages (`delivery_mode` 2) to a durable queue.
    #[arg(long)]
    persistent: bool,
    /// Bytes of encoded publishes written per socket write.
    #[arg(long, default_value_t = 128 * 1024)]
    batch_bytes: usize,
    /// Fail when nothing arrives (or no write completes) for this many seconds.
    #[arg(long, default_value_t = 30)]
    idle_timeout: u64,
    /// Virtual host.
    #[arg(long, default_value = "/")]
    vhost: String,
    /// User name for PLAIN authentication.
    #[arg(long, default_value = "guest")]
    user: String,
    /// Password for PLAIN authentication.
    #[arg(long, default_value = "guest")]
    password: String,
}

impl Args {
    fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_timeout.max(1))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("amqp_throughput: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the producer thread measured.
struct ProducerReport {
    /// Just before the first publish was written.
    start: Instant,
    /// When the last publish was written (and, with --confirm, confirmed).
    done: Instant,
    /// CPU time the producer thread used between `start` and `done`.
    cpu: Duration,
}

/// What the consumer thread measured.
struct ConsumerReport {
    /// When the consumer was ready (consume-ok received).
    ready: Instant,
    /// First message fully received.
    first: Instant,
    /// Last message fully received.
    last: Instant,
    /// CPU time the consumer thread used between `ready` and `last`.
    cpu: Duration,
    /// Body bytes received.
    bytes: u64,
}

/// A finished side, sent from its thread to `run`.
enum Outcome {
    Producer(Result<ProducerReport>),
    Consumer(Result<ConsumerReport>),
}

/// Starts both sides, waits for them, prints the results.
fn run(args: &Args) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.confirm && args.window == 0 {
        bail!("--window must be at least 1");
    }
    let (out_tx, out_rx) = mpsc::channel::<Outcome>();
    let (queue_tx, queue_rx) = oneshot::channel::<String>();

    let consumer_args = args.clone();
    let consumer_out = out_tx.clone();
    std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            let r = block_on(consume(&consumer_args, queue_tx));
            // The receiver only goes away when `run` has already returned.
            let _ = consumer_out.send(Outcome::Consumer(r));
        })
        .context("spawning consumer thread")?;
    let producer_args = args.clone();
    std::thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            let r = block_on(produce(&producer_args, queue_rx));
            let _ = out_tx.send(Outcome::Producer(r));
        })
        .context("spawning producer thread")?;

    let mut producer = None;
    let mut consumer = None;
    while producer.is_none() || consumer.is_none() {
        let outcome = out_rx
            .recv()
            .map_err(|_| anyhow!("a worker thread exited without reporting"))?;
        let failed = match outcome {
            Outcome::Producer(Ok(p)) => {
                producer = Some(p);
                None
            }
            Outcome::Consumer(Ok(c)) => {
                consumer = Some(c);
                None
            }
            Outcome::Producer(Err(e)) => Some(e.context("producer")),
            Outcome::Consumer(Err(e)) => Some(e.context("consumer")),
        };
        if let Some(err) = failed {
            // The other side usually fails right after (or is the real cause): report it too.
            if let Ok(Outcome::Producer(Err(e)) | Outcome::Consumer(Err(e))) =
                out_rx.recv_timeout(Duration::from_millis(500))
            {
                eprintln!("amqp_throughput: also: {e:#}");
            }
            return Err(err);
        }
    }
    let (Some(p), Some(c)) = (producer, consumer) else {
        bail!("internal: missing report");
    };
    print_report(args, &p, &c);
    Ok(())
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
fn print_report(args: &Args, p: &ProducerReport, c: &ConsumerReport) {
    let n = args.count as f64;
    let publish_s = p.done.duration_since(p.start).as_secs_f64();
    let consume_s = c.last.duration_since(c.first).as_secs_f64();
    let elapsed_s = c.last.duration_since(p.start).as_secs_f64();
    // Delay from the first publish to the first delivery (0 if, oddly, it came first).
    let first_msg_s = c.first.saturating_duration_since(p.start).as_secs_f64();
    let publish_rate = rate(n, publish_s);
    // n messages span n - 1 inter-arrival gaps between the first and the last.
    let consume_rate = if args.count > 1 {
        rate(n - 1.0, consume_s)
    } else {
        0.0
    };
    let overall_rate = rate(n, elapsed_s);
    let consumer_wall = c.last.duration_since(c.ready).as_secs_f64();
    let producer_cpu_pct = pct(p.cpu.as_secs_f64(), publish_s);
    let consumer_cpu_pct = pct(c.cpu.as_secs_f64(), consumer_wall);
    // Rate each side could sustain if it had a whole core to itself.
    let producer_capacity = rate(n, p.cpu.as_secs_f64());
    let consumer_capacity = rate(n, c.cpu.as_secs_f64());
    let mode = match (args.confirm, args.persistent) {
        (false, false) => "transient, no confirms".to_string(),
        (false, true) => "persistent, no confirms".to_string(),
        (true, false) => format!("transient, confirms (window {})", args.window),
        (true, true) => format!("persistent, confirms (window {})", args.window),
    };
    println!(
        "broker {} | {} msgs x {} B | {mode} | auto-ack consumer",
        args.addr, args.count, args.size
    );
    println!("publish : {publish_rate:>12.0} msg/s  ({publish_s:.3} s)");
    println!(
        "consume : {consume_rate:>12.0} msg/s  (first->last {consume_s:.3} s; first after {first_msg_s:.3} s)"
    );
    println!(
        "overall : {overall_rate:>12.0} msg/s  (first publish -> last consumed {elapsed_s:.3} s)"
    );
    println!(
        "client CPU: producer {producer_cpu_pct:.0}% of a core ({:.3} s, ~{producer_capacity:.0} msg/s if CPU-bound), \
         consumer {consumer_cpu_pct:.0}% ({:.3} s, ~{consumer_capacity:.0} msg/s if CPU-bound)",
        p.cpu.as_secs_f64(),
        c.cpu.as_secs_f64()
    );
    println!(
        "{{\"broker_addr\":\"{}\",\"count\":{},\"size\":{},\"confirm\":{},\"persistent\":{},\
         \"publish_rate\":{publish_rate:.1},\"consume_rate\":{consume_rate:.1},\
         \"overall_rate\":{overall_rate:.1},\"elapsed_s\":{elapsed_s:.4},\"first_msg_s\":{first_msg_s:.4},\
         \"bytes_consumed\":{},\"producer_cpu_pct\":{producer_cpu_pct:.1},\
         \"consumer_cpu_pct\":{consumer_cpu_pct:.1}}}",
        json_escape(&args.addr),
        args.count,
        args.size,
        args.confirm,
        args.persistent,
        c.bytes
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

/// Reads frames from one half of a connection, with the no-progress timeout.
struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    frame_max: u32,
    idle: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(io: R, idle: Duration) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(256 * 1024),
            frame_max: PRE_TUNE_FRAME_MAX,
            idle,
        }
    }

    /// Next frame; errors on EOF, decode errors and `idle` without any bytes arriving.
    async fn next(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) =
                frame::decode_frame(&mut self.buf, self.frame_max).context("frame decode error")?
            {
                return Ok(f);
            }
            if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let n = timeout(self.idle, self.io.read_buf(&mut self.buf))
                .await
                .map_err(|_| anyhow!("no data from broker for {:?}", self.idle))?
                .context("reading from broker")?;
            if n == 0 {
                bail!("broker closed the TCP connection");
            }
        }
    }

    /// Next method frame, skipping heartbeats; turns `connection.close` / `channel.close` and
    /// stray content frames into errors.
    async fn next_method(&mut self) -> Result<Method> {
        loop {
            match self.next().await? {
                Frame::Method { method, .. } => return check_close(method),
                Frame::Heartbeat { .. } => {}
                Frame::Header { .. } | Frame::Body { .. } => {
                    bail!("unexpected content frame while waiting for a method")
                }
            }
        }
    }
}

/// Maps a broker-initiated close to an error, passes every other method through.
fn check_close(method: Method) -> Result<Method> {
    match method {
        Method::ConnectionClose(c) => bail!(
            "broker closed the connection: {} {} (class {}, method {})",
            c.reply_code,
            c.reply_text,
            c.class_id,
            c.method_id
        ),
        Method::ChannelClose(c) => bail!(
            "broker closed the channel: {} {} (class {}, method {})",
            c.reply_code,
            c.reply_text,
            c.class_id,
            c.method_id
        ),
        m => Ok(m),
    }
}

/// Encodes `methods` on [`CHANNEL`] (or channel 0 for `connection.*`) and writes them at once.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, channel: u16, methods: &[Method]) -> Result<()> {
    let mut buf = BytesMut::with_capacity(512);
    for m in methods {
        frame::encode_method_frame(channel, m, &mut buf);
    }
    w.write_all(&buf).await.context("writing to broker")
}

/// An open connection with channel [`CHANNEL`] open.
struct Conn {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    frame_max: u32,
}

/// Connects, authenticates (PLAIN), tunes, opens the vhost and channel [`CHANNEL`].
async fn open(args: &Args) -> Result<Conn> {
    let idle = args.idle();
    let stream = timeout(idle, TcpStream::connect(&args.addr))
        .await
        .map_err(|_| anyhow!("connecting to {}: timed out", args.addr))?
        .with_context(|| format!("connecting to {}", args.addr))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (r, mut writer) = stream.into_split();
    let mut reader = FrameReader::new(r, idle);
    writer
        .write_all(&PROTOCOL_HEADER[..])
        .await
        .context("writing protocol header")?;

    match reader
        .next_method()
        .await
        .context("waiting for connection.start")?
    {
        Method::ConnectionStart(_) => {}
        m => bail!("expected connection.start, got {m:?}"),
    }
    let response = format!("\0{}\0{}", args.user, args.password);
    let mut client_properties = FieldTable::new();
    client_properties.insert(
        "product",
        FieldValue::LongString(Bytes::from_static(b"warren amqp_throughput")),
    );
    let start_ok = ConnectionStartOk {
        client_properties,
        mechanism: "PLAIN".into(),
        response: response.into_bytes().into(),
        locale: "en_US".into(),
    };
    send(&mut writer, 0, &[Method::ConnectionStartOk(start_ok)]).await?;

    let tune = match reader.next_method().await.context(
        "waiting for connection.tune (brokers drop the connection here on a failed login)",
    )? {
        Method::ConnectionTune(t) => t,
        m => bail!("expected connection.tune, got {m:?}"),
    };
    let frame_max = tune.frame_max;
    let tune_ok = ConnectionTuneOk {
        channel_max: tune.channel_max,
        frame_max,
        heartbeat: 0,
    };
    let open = ConnectionOpen {
        virtual_host: args.vhost.as_str().into(),
        ..Default::default()
    };
    send(
        &mut writer,
        0,
        &[
            Method::ConnectionTuneOk(tune_ok),
            Method::ConnectionOpen(open),
        ],
    )
    .await?;
    // 0 means "no limit" to the codec too; never accept less than before tuning.
    reader.frame_max = if frame_max == 0 {
        0
    } else {
        frame_max.max(PRE_TUNE_FRAME_MAX)
    };
    match reader
        .next_method()
        .await
        .context("waiting for connection.open-ok")?
    {
        Method::ConnectionOpenOk(_) => {}
        m => bail!("expected connection.open-ok, got {m:?}"),
    }

    send(
        &mut writer,
        CHANNEL,
        &[Method::ChannelOpen(ChannelOpen::default())],
    )
    .await?;
    match reader
        .next_method()
        .await
        .context("waiting for channel.open-ok")?
    {
        Method::ChannelOpenOk(_) => {}
        m => bail!("expected channel.open-ok, got {m:?}"),
    }
    Ok(Conn {
        reader,
        writer,
        frame_max,
    })
}

/// Consumer side: declares the queue, consumes `count` messages with auto-ack, measures.
async fn consume(args: &Args, queue_tx: oneshot::Sender<String>) -> Result<ConsumerReport> {
    let Conn {
        mut reader,
        mut writer,
        ..
    } = open(args).await?;

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let queue = format!("amqp-throughput-{}-{nanos}", std::process::id());
    let declare = QueueDeclare {
        queue: queue.as_str().into(),
        durable: args.persistent,
        auto_delete: true,
        ..Default::default()
    };
    send(&mut writer, CHANNEL, &[Method::QueueDeclare(declare)]).await?;
    match reader
        .next_method()
        .await
        .context("waiting for queue.declare-ok")?
    {
        Method::QueueDeclareOk(_) => {}
        m => bail!("expected queue.declare-ok, got {m:?}"),
    }
    let consume = BasicConsume {
        queue: queue.as_str().into(),
        consumer_tag: "amqp-throughput".into(),
        no_ack: true,
        ..Default::default()
    };
    send(&mut writer, CHANNEL, &[Method::BasicConsume(consume)]).await?;
    match reader
        .next_method()
        .await
        .context("waiting for basic.consume-ok")?
    {
        Method::BasicConsumeOk(_) => {}
        m => bail!("expected basic.consume-ok, got {m:?}"),
    }
    let ready = Instant::now();
    let cpu0 = thread_cpu_time();
    queue_tx
        .send(queue.clone())
        .map_err(|_| anyhow!("producer went away before the queue was ready"))?;

    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut first = ready;
    // Body bytes still expected for the delivery in progress; None between deliveries.
    let mut remaining: Option<u64> = None;
    let mut in_delivery = false;
    let last = loop {
        let complete = match reader
            .next()
            .await
            .with_context(|| format!("after {received} of {} messages", args.count))?
        {
            Frame::Method { method, .. } => match check_close(method)? {
                Method::BasicDeliver(_) => {
                    if in_delivery {
                        bail!("basic.deliver before the previous message's content was complete");
                    }
                    in_delivery = true;
                    false
                }
                Method::BasicCancel(_) => bail!("the broker cancelled the consumer"),
                _ => false,
            },
            Frame::Header { header, .. } => {
                if !in_delivery || remaining.is_some() {
                    bail!("unexpected content header");
                }
                if header.body_size == 0 {
                    true
                } else {
                    remaining = Some(header.body_size);
                    false
                }
            }
            Frame::Body { payload, .. } => {
                let len = payload.len() as u64;
                let left = remaining
                    .and_then(|r| r.checked_sub(len))
                    .ok_or_else(|| anyhow!("unexpected or oversized body frame"))?;
                bytes += len;
                remaining = Some(left);
                left == 0
            }
            Frame::Heartbeat { .. } => false,
        };
        if complete {
            in_delivery = false;
            remaining = None;
            received += 1;
            if received == 1 {
                first = Instant::now();
            }
            if received == args.count {
                break Instant::now();
            }
        }
    };
    let cpu = thread_cpu_time().saturating_sub(cpu0);

    // Best-effort cleanup; the measurement is already done.
    if let Err(e) = close_consumer(&mut reader, &mut writer, &queue).await {
        eprintln!("amqp_throughput: warning: consumer cleanup: {e:#}");
    }
    Ok(ConsumerReport {
        ready,
        first,
        last,
        cpu,
        bytes,
    })
}

/// Deletes the benchmark queue and closes the consumer's connection.
async fn close_consumer(
    reader: &mut FrameReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
    queue: &str,
) -> Result<()> {
    reader.idle = Duration::from_secs(5);
    let delete = QueueDelete {
        queue: queue.into(),
        ..Default::default()
    };
    send(writer, CHANNEL, &[Method::QueueDelete(delete)]).await?;
    // Tolerate anything else the broker interleaves before the delete-ok.
    while !matches!(reader.next_method().await?, Method::QueueDeleteOk(_)) {}
    close_connection(reader, writer).await
}

/// Sends `connection.close` and waits for `connection.close-ok`.
async fn close_connection(
    reader: &mut FrameReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
) -> Result<()> {
    let close = ConnectionClose {
        reply_code: 200,
        reply_text: "bye".into(),
        ..Default::default()
    };
    send(writer, 0, &[Method::ConnectionClose(close)]).await?;
    reader.idle = Duration::from_secs(5);
    loop {
        if let Frame::Method {
            method: Method::ConnectionCloseOk(_),
            ..
        } = reader.next().await?
        {
            return Ok(());
        }
    }
}

/// Publisher-confirm bookkeeping: how many publishes the broker has confirmed so far.
#[derive(Default)]
struct Confirms {
    /// Every delivery tag up to and including this one is confirmed.
    watermark: u64,
    /// Individually confirmed tags above `watermark`.
    above: BTreeSet<u64>,
    /// Number of confirmed publishes.
    confirmed: u64,
}

impl Confirms {
    fn ack(&mut self, tag: u64, multiple: bool) {
        if tag <= self.watermark {
            return;
        }
        if multiple {
            let rest = self.above.split_off(&(tag + 1));
            let singles = self.above.len() as u64;
            self.above = rest;
            self.confirmed += (tag - self.watermark) - singles;
            self.watermark = tag;
        } else if self.above.insert(tag) {
            self.confirmed += 1;
        }
        while self.above.first() == Some(&(self.watermark + 1)) {
            self.above.pop_first();
            self.watermark += 1;
        }
    }
}

/// Producer side: waits for the consumer's queue, publishes `count` messages, measures.
async fn produce(args: &Args, queue_rx: oneshot::Receiver<String>) -> Result<ProducerReport> {
    let Conn {
        mut reader,
        mut writer,
        frame_max,
    } = open(args).await?;
    if args.confirm {
        let select = ConfirmSelect { nowait: false };
        send(&mut writer, CHANNEL, &[Method::ConfirmSelect(select)]).await?;
        match reader
            .next_method()
            .await
            .context("waiting for confirm.select-ok")?
        {
            Method::ConfirmSelectOk(_) => {}
            m => bail!("expected confirm.select-ok, got {m:?}"),
        }
    }
    let queue = queue_rx
        .await
        .map_err(|_| anyhow!("consumer failed before its queue was ready"))?;

    // The content header is the same for every message: encode it once and publish its raw
    // payload through the codec's pass-through path.
    let header = ContentHeader {
        class_id: BASIC_CLASS,
        weight: 0,
        body_size: args.size as u64,
        properties: BasicProperties {
            delivery_mode: args.persistent.then_some(2),
            ..Default::default()
        },
    };
    let mut tmp = BytesMut::new();
    frame::encode_header_frame(CHANNEL, &header, &mut tmp);
    let Some(Frame::Header {
        raw: raw_header, ..
    }) = frame::decode_frame(&mut tmp, 0).context("re-decoding our own content header")?
    else {
        bail!("re-decoding our own content header gave no header frame");
    };
    let body = vec![b'x'; args.size];

    let confirms = RefCell::new(Confirms::default());
    let progress = Notify::new();
    let idle = args.idle();

    // Reads the producer connection: confirms, and any close the broker sends.
    let report = {
        let read_side = async {
            loop {
                match reader.next_method().await? {
                    Method::BasicAck(a) => {
                        confirms.borrow_mut().ack(a.delivery_tag, a.multiple);
                        progress.notify_one();
                    }
                    Method::BasicNack(n) => bail!("broker nacked publish {}", n.delivery_tag),
                    Method::BasicReturn(r) => {
                        bail!(
                            "broker returned a publish: {} {}",
                            r.reply_code,
                            r.reply_text
                        )
                    }
                    _ => {}
                }
            }
        };

        let write_side = async {
            let cpu0 = thread_cpu_time();
            let start = Instant::now();
            let mut buf = BytesMut::with_capacity(args.batch_bytes + 64 * 1024);
            let mut published = 0u64;
            while published < args.count {
                let mut allowed = args.count - published;
                if args.confirm {
                    let outstanding = loop {
                        let outstanding = published - confirms.borrow().confirmed;
                        if outstanding < args.window {
                            break outstanding;
                        }
                        timeout(idle, progress.notified())
                            .await
                            .map_err(|_| anyhow!("no publisher confirm for {idle:?}"))?;
                    };
                    allowed = allowed.min(args.window - outstanding);
                }
                buf.clear();
                let mut n = 0u64;
                while n < allowed && (n == 0 || buf.len() < args.batch_bytes) {
                    method::encode_basic_publish_frame(CHANNEL, "", &queue, false, false, &mut buf);
                    frame::encode_raw_header_frame(CHANNEL, &raw_header, &mut buf);
                    frame::encode_body_frames(CHANNEL, &body, frame_max, &mut buf);
                    n += 1;
                }
                timeout(idle, writer.write_all(&buf))
                    .await
                    .map_err(|_| anyhow!("broker accepted no data for {idle:?}"))?
                    .context("writing publishes")?;
                published += n;
            }
            if args.confirm {
                while confirms.borrow().confirmed < args.count {
                    timeout(idle, progress.notified())
                        .await
                        .map_err(|_| anyhow!("no publisher confirm for {idle:?}"))?;
                }
            }
            let done = Instant::now();
            let cpu = thread_cpu_time().saturating_sub(cpu0);
            Ok::<_, anyhow::Error>(ProducerReport { start, done, cpu })
        };

        tokio::select! {
            r = write_side => r?,
            r = read_side => return r.context("producer connection"),
        }
    };
    // Best-effort close so the broker doesn't log an abrupt disconnect.
    let _ = close_connection(&mut reader, &mut writer).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{json_escape, Confirms};

    #[test]
    fn confirms_count_single_multiple_and_out_of_order_acks() {
        let mut c = Confirms::default();
        c.ack(2, false);
        c.ack(4, false);
        assert_eq!((c.confirmed, c.watermark), (2, 0));
        c.ack(3, true); // confirms 1 and 3; 2 was already counted
        assert_eq!((c.confirmed, c.watermark), (4, 4));
        c.ack(4, false); // duplicate
        c.ack(6, false);
        c.ack(5, false);
        assert_eq!((c.confirmed, c.watermark), (6, 6));
        c.ack(10, true);
        assert_eq!((c.confirmed, c.watermark), (10, 10));
        assert!(c.above.is_empty());
    }

    #[test]
    fn json_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
