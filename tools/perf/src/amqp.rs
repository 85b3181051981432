//! The AMQP 0-9-1 side of `warren perf`: connection handshake, queue set-up and clean-up,
//! producers (pipelined publishes, confirm window), consumers (hand-parsed deliveries, batched
//! acks) and idle connections, on raw sockets and the `warren_amqp` codec.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use warren_amqp::constants::PROTOCOL_HEADER;
use warren_amqp::frame::{self, Frame};
use warren_amqp::method::{
    self, BasicConsume, BasicQos, ChannelOpen, ConfirmSelect, ConnectionClose, ConnectionOpen,
    ConnectionStartOk, ConnectionTuneOk, Method, QueueBind, QueueDeclare, QueueDelete, QueuePurge,
};
use warren_amqp::properties::{BasicProperties, ContentHeader};
use warren_amqp::table::{FieldTable, FieldValue};

use super::transport::{self, Held, ReadHalf, WriteHalf};
use super::uri::AmqpUri;
use super::{read_stamp, stats, wait_go, write_stamp, Go, IdleSet, Kind, Plan, Shared, Stamp};

/// The one channel every connection uses.
const CHANNEL: u16 = 1;
/// `basic` class id, for content headers.
const BASIC_CLASS: u16 = 60;
/// Largest frame accepted before `connection.tune` has told us the negotiated size.
const PRE_TUNE_FRAME_MAX: u32 = 128 * 1024;
/// Frame type octets.
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// A read timeout that never fires (the monitor enforces the no-progress rule).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);
/// A read at least this large suggests more is waiting: yield before the next one.
pub(crate) const BIG_READ: usize = 32 * 1024;

/// Reads frames from one half of a connection.
struct FrameReader {
    io: ReadHalf,
    buf: BytesMut,
    frame_max: u32,
}

impl FrameReader {
    fn new(io: ReadHalf) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(64 * 1024),
            frame_max: PRE_TUNE_FRAME_MAX,
        }
    }

    /// Reads more bytes, waiting at most `wait` (`None`: no limit); errors on EOF and on
    /// timeout. Returns the number of bytes read.
    async fn fill(&mut self, wait: Option<Duration>) -> Result<usize> {
        transport::read_more(&mut self.io, &mut self.buf, wait).await
    }

    /// Next frame; errors on EOF, decode errors and `wait` without any bytes arriving.
    async fn next(&mut self, wait: Duration) -> Result<Frame> {
        loop {
            if let Some(f) =
                frame::decode_frame(&mut self.buf, self.frame_max).context("frame decode error")?
            {
                return Ok(f);
            }
            self.fill((wait != FOREVER).then_some(wait)).await?;
        }
    }

    /// Next method frame, skipping heartbeats and content; broker closes become errors.
    async fn next_method(&mut self, wait: Duration) -> Result<Method> {
        loop {
            match self.next(wait).await? {
                Frame::Method { method, .. } => return check_close(method),
                Frame::Heartbeat { .. } | Frame::Header { .. } | Frame::Body { .. } => {}
            }
        }
    }
}

/// Maps a broker-initiated close to an error, passes every other method through.
fn check_close(method: Method) -> Result<Method> {
    match method {
        Method::ConnectionClose(c) => bail!(
            "the broker closed the connection: {} {} (class {}, method {})",
            c.reply_code,
            c.reply_text,
            c.class_id,
            c.method_id
        ),
        Method::ChannelClose(c) => bail!(
            "the broker closed the channel: {} {} (class {}, method {})",
            c.reply_code,
            c.reply_text,
            c.class_id,
            c.method_id
        ),
        m => Ok(m),
    }
}

/// Encodes `methods` on `channel` and writes them with one write.
async fn send(w: &mut WriteHalf, channel: u16, methods: &[Method]) -> Result<()> {
    let mut buf = BytesMut::with_capacity(512);
    for m in methods {
        frame::encode_method_frame(channel, m, &mut buf);
    }
    w.write_all(&buf).await.context("writing to the broker")
}

/// Sends `m` on [`CHANNEL`] and waits for the reply `pick` accepts (other methods are skipped).
async fn rpc<T>(
    conn: &mut Conn,
    m: Method,
    wait: Duration,
    what: &str,
    pick: impl Fn(Method) -> Option<T>,
) -> Result<T> {
    send(&mut conn.writer, CHANNEL, &[m]).await?;
    loop {
        let got = conn
            .reader
            .next_method(wait)
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if let Some(t) = pick(got) {
            return Ok(t);
        }
    }
}

/// An open connection with channel [`CHANNEL`] open.
struct Conn {
    reader: FrameReader,
    writer: WriteHalf,
    frame_max: u32,
}

impl Conn {
    /// Connects, authenticates (PLAIN), tunes (heartbeats off), opens the vhost and channel 1.
    async fn open(uri: &AmqpUri, tls: Tls<'_>, wait: Duration, name: &str) -> Result<Conn> {
        let (mut reader, mut writer) = handshake_start(uri, tls, wait, name).await?;
        let tune = match reader.next_method(wait).await.context(
            "waiting for connection.tune (brokers drop the connection here on a failed login)",
        )? {
            Method::ConnectionTune(t) => t,
            m => bail!("expected connection.tune, got {}", m.name()),
        };
        let frame_max = tune.frame_max;
        send(
            &mut writer,
            0,
            &[
                Method::ConnectionTuneOk(ConnectionTuneOk {
                    channel_max: tune.channel_max,
                    frame_max,
                    heartbeat: 0,
                }),
                Method::ConnectionOpen(ConnectionOpen {
                    virtual_host: uri.vhost.clone(),
                    ..Default::default()
                }),
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
            .next_method(wait)
            .await
            .context("waiting for connection.open-ok")?
        {
            Method::ConnectionOpenOk(_) => {}
            m => bail!("expected connection.open-ok, got {}", m.name()),
        }
        send(
            &mut writer,
            CHANNEL,
            &[Method::ChannelOpen(ChannelOpen::default())],
        )
        .await?;
        match reader
            .next_method(wait)
            .await
            .context("waiting for channel.open-ok")?
        {
            Method::ChannelOpenOk(_) => {}
            m => bail!("expected channel.open-ok, got {}", m.name()),
        }
        Ok(Conn {
            reader,
            writer,
            frame_max: if frame_max == 0 { 131_072 } else { frame_max },
        })
    }

    /// Sends `connection.close` and waits (briefly) for `connection.close-ok`.
    async fn close(self) -> Result<()> {
        self.close_within(Duration::from_secs(3)).await
    }

    /// Sends `connection.close` and waits up to `wait` for `connection.close-ok`.
    async fn close_within(mut self, wait: Duration) -> Result<()> {
        let close = ConnectionClose {
            reply_code: 200,
            reply_text: "bye".into(),
            ..Default::default()
        };
        send(&mut self.writer, 0, &[Method::ConnectionClose(close)]).await?;
        loop {
            if let Frame::Method {
                method: Method::ConnectionCloseOk(_),
                ..
            } = self.reader.next(wait).await?
            {
                return Ok(());
            }
        }
    }
}

/// The run's client TLS configuration (for `amqps://`).
type Tls<'a> = Option<&'a Arc<rustls::ClientConfig>>;

/// Connect (TCP, TLS for amqps), protocol header, connection.start → start-ok.
async fn handshake_start(
    uri: &AmqpUri,
    tls: Tls<'_>,
    wait: Duration,
    name: &str,
) -> Result<(FrameReader, WriteHalf)> {
    let (r, mut writer) = transport::connect(&uri.endpoint(tls), wait).await?;
    let mut reader = FrameReader::new(r);
    writer
        .write_all(&PROTOCOL_HEADER[..])
        .await
        .context("writing the protocol header")?;
    match reader
        .next_method(wait)
        .await
        .context("waiting for connection.start")?
    {
        Method::ConnectionStart(_) => {}
        m => bail!("expected connection.start, got {}", m.name()),
    }
    send(&mut writer, 0, &[start_ok(uri, name)]).await?;
    Ok((reader, writer))
}

fn start_ok(uri: &AmqpUri, name: &str) -> Method {
    let mut client_properties = FieldTable::new();
    client_properties.insert(
        "product",
        FieldValue::LongString(Bytes::from_static(b"warren perf")),
    );
    client_properties.insert(
        "connection_name",
        FieldValue::LongString(Bytes::from(name.to_string())),
    );
    let mut capabilities = FieldTable::new();
    capabilities.insert("publisher_confirms", FieldValue::Boolean(true));
    capabilities.insert("connection.blocked", FieldValue::Boolean(true));
    capabilities.insert("consumer_cancel_notify", FieldValue::Boolean(true));
    client_properties.insert("capabilities", FieldValue::FieldTable(capabilities));
    Method::ConnectionStartOk(ConnectionStartOk {
        client_properties,
        mechanism: "PLAIN".into(),
        response: format!("\0{}\0{}", uri.user, uri.password)
            .into_bytes()
            .into(),
        locale: "en_US".into(),
    })
}

fn amqp_uri(plan: &Plan) -> Result<&AmqpUri> {
    plan.amqp
        .as_ref()
        .ok_or_else(|| anyhow!("internal: no AMQP URI"))
}

/// Every queue of the run: the `--consume-queue` (if any, first: it is where the others
/// dead-letter), then the queues published to, with their index (`--queue-arg` applies to
/// those).
fn all_queues(plan: &Plan) -> impl Iterator<Item = (String, Option<usize>)> + '_ {
    let consume = plan.consume_queue.iter().map(|q| (q.clone(), None));
    consume.chain((0..plan.queues).map(|q| (plan.queue_name(q), Some(q))))
}

/// Declares (durable with `--persistent`, with the `--queue-arg` arguments) and purges the
/// queues, and the `--consume-queue`; in mqtt-to-amqp mode binds each to `amq.topic` with
/// `perf.<i>`.
pub(crate) async fn setup_queues(plan: &Plan) -> Result<()> {
    let uri = amqp_uri(plan)?;
    let wait = plan.timeout;
    let mut conn = Conn::open(uri, plan.tls.as_ref(), wait, "perf setup")
        .await
        .context("set-up connection")?;
    for (queue, published) in all_queues(plan) {
        let declare = QueueDeclare {
            queue: queue.clone(),
            durable: plan.persistent,
            arguments: if published.is_some() {
                plan.queue_args.clone()
            } else {
                FieldTable::new()
            },
            ..Default::default()
        };
        rpc(
            &mut conn,
            Method::QueueDeclare(declare),
            wait,
            "queue.declare-ok",
            |m| matches!(m, Method::QueueDeclareOk(_)).then_some(()),
        )
        .await
        .with_context(|| {
            format!(
                "declaring queue {queue:?} (if it exists with other properties or arguments, \
                 delete it or use --queue-pattern)"
            )
        })?;
        let purge = QueuePurge {
            queue: queue.clone(),
            ..Default::default()
        };
        rpc(
            &mut conn,
            Method::QueuePurge(purge),
            wait,
            "queue.purge-ok",
            |m| matches!(m, Method::QueuePurgeOk(_)).then_some(()),
        )
        .await
        .with_context(|| format!("purging queue {queue:?}"))?;
        if let (Kind::MqttToAmqp, Some(q)) = (plan.kind, published) {
            let bind = QueueBind {
                queue: queue.clone(),
                exchange: "amq.topic".into(),
                routing_key: format!("perf.{q}"),
                ..Default::default()
            };
            rpc(
                &mut conn,
                Method::QueueBind(bind),
                wait,
                "queue.bind-ok",
                |m| matches!(m, Method::QueueBindOk(_)).then_some(()),
            )
            .await
            .with_context(|| format!("binding queue {queue:?} to amq.topic"))?;
        }
    }
    conn.close().await.context("closing the set-up connection")
}

/// Counts the messages left in the queues and deletes them unless `keep`. Returns the count.
pub(crate) async fn finish_queues(plan: &Plan, keep: bool) -> Result<u64> {
    let uri = amqp_uri(plan)?;
    let wait = plan.timeout;
    let mut conn = Conn::open(uri, plan.tls.as_ref(), wait, "perf clean-up").await?;
    let mut queued = 0u64;
    for (queue, _) in all_queues(plan) {
        let declare = QueueDeclare {
            queue: queue.clone(),
            passive: true,
            ..Default::default()
        };
        queued += rpc(
            &mut conn,
            Method::QueueDeclare(declare),
            wait,
            "queue.declare-ok",
            |m| match m {
                Method::QueueDeclareOk(ok) => Some(u64::from(ok.message_count)),
                _ => None,
            },
        )
        .await
        .with_context(|| format!("checking queue {queue:?}"))?;
        if !keep {
            let delete = QueueDelete {
                queue: queue.clone(),
                ..Default::default()
            };
            rpc(
                &mut conn,
                Method::QueueDelete(delete),
                wait,
                "queue.delete-ok",
                |m| matches!(m, Method::QueueDeleteOk(_)).then_some(()),
            )
            .await
            .with_context(|| format!("deleting queue {queue:?}"))?;
        }
    }
    conn.close().await?;
    Ok(queued)
}

/// Publisher-confirm bookkeeping: how many publishes the broker has confirmed so far.
#[derive(Default)]
pub(crate) struct Confirms {
    /// Every delivery tag up to and including this one is confirmed.
    watermark: u64,
    /// Individually confirmed tags above `watermark`.
    above: BTreeSet<u64>,
    /// Number of confirmed publishes.
    pub(crate) confirmed: u64,
}

impl Confirms {
    /// Records an ack for `tag` (all tags up to it with `multiple`); returns how many
    /// publishes it newly confirmed.
    pub(crate) fn ack(&mut self, tag: u64, multiple: bool) -> u64 {
        if tag <= self.watermark {
            return 0;
        }
        let before = self.confirmed;
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
        self.confirmed - before
    }
}

/// The encoded content header frames a producer cycles through: one, or one per priority
/// 0..N-1 with `--priority-spread N`.
fn header_frames(plan: &Plan) -> Vec<Bytes> {
    let priorities: Vec<Option<u8>> = match plan.priority_spread {
        None => vec![None],
        Some(n) => (0..n).map(|p| u8::try_from(p).ok()).collect(),
    };
    priorities
        .into_iter()
        .map(|priority| {
            let header = ContentHeader {
                class_id: BASIC_CLASS,
                weight: 0,
                body_size: plan.size as u64,
                properties: BasicProperties {
                    delivery_mode: Some(if plan.persistent { 2 } else { 1 }),
                    priority,
                    ..Default::default()
                },
            };
            let mut tmp = BytesMut::new();
            frame::encode_header_frame(CHANNEL, &header, &mut tmp);
            tmp.freeze()
        })
        .collect()
}

/// Producer `idx`: publishes to its queue until `--count` or `--duration`, flat out or at
/// `--rate`, keeping at most `--confirm` publishes unconfirmed.
pub(crate) async fn producer(
    shared: Arc<Shared>,
    idx: usize,
    ready: mpsc::Sender<()>,
    mut go: Go,
) -> Result<()> {
    let r = producer_inner(&shared, idx, ready, &mut go).await;
    r.with_context(|| format!("producer {idx}"))
}

async fn producer_inner(
    shared: &Shared,
    idx: usize,
    ready: mpsc::Sender<()>,
    go: &mut Go,
) -> Result<()> {
    let plan = &shared.plan;
    let wait = plan.timeout;
    let Conn {
        mut reader,
        mut writer,
        frame_max,
    } = Conn::open(
        amqp_uri(plan)?,
        plan.tls.as_ref(),
        wait,
        &format!("perf producer {idx}"),
    )
    .await?;
    if plan.window.is_some() {
        send(
            &mut writer,
            CHANNEL,
            &[Method::ConfirmSelect(ConfirmSelect { nowait: false })],
        )
        .await?;
        loop {
            if let Method::ConfirmSelectOk(_) = reader
                .next_method(wait)
                .await
                .context("waiting for confirm.select-ok")?
            {
                break;
            }
        }
    }
    let queue = plan.queue_name(idx % plan.queues);
    // The content header is the same for every message, or one per priority with
    // --priority-spread: encode them once.
    let header_frames = header_frames(plan);
    let mut body = vec![0u8; plan.size];
    for (i, b) in body.iter_mut().enumerate().skip(super::STAMP_LEN) {
        *b = b'a' + (i % 26) as u8;
    }
    ready
        .send(())
        .await
        .map_err(|_| anyhow!("the run was abandoned"))?;
    let start = wait_go(go).await?;

    let confirms = Mutex::new(Confirms::default());
    let progress = Notify::new();
    let read_side = async {
        loop {
            match reader.next_method(FOREVER).await? {
                Method::BasicAck(a) => {
                    let n = confirms.lock().ack(a.delivery_tag, a.multiple);
                    shared.confirmed.fetch_add(n, Ordering::Relaxed);
                    progress.notify_one();
                }
                Method::BasicNack(n) => bail!("the broker nacked publish {}", n.delivery_tag),
                Method::BasicReturn(r) => bail!(
                    "the broker returned a message: {} {} (exchange {:?}, routing key {:?})",
                    r.reply_code,
                    r.reply_text,
                    r.exchange,
                    r.routing_key
                ),
                Method::ConnectionBlocked(b) => {
                    let first = shared.blocked.fetch_add(1, Ordering::Relaxed) == 0;
                    if first {
                        eprintln!("warren perf: the broker blocked publishers: {}", b.reason);
                    }
                }
                _ => {}
            }
        }
    };
    let write_side = async {
        let count = plan.count.unwrap_or(u64::MAX);
        let deadline = plan.duration.map(|d| start + d);
        let mut buf = BytesMut::with_capacity(plan.batch_bytes + plan.size + 1024);
        let mut sent = 0u64;
        let mut refill = super::Refill::default();
        while sent < count && super::before(deadline) {
            let mut allowed = count - sent;
            if let Some(window) = plan.window {
                let outstanding = loop {
                    let notified = progress.notified();
                    let outstanding = sent - confirms.lock().confirmed;
                    if refill.ready(outstanding, window) {
                        break outstanding;
                    }
                    notified.await;
                };
                allowed = allowed.min(window - outstanding);
            }
            if let Some(rate) = plan.rate {
                let elapsed = start.elapsed().as_secs_f64();
                let due = (elapsed * rate).floor() as u64 + 1;
                if due <= sent {
                    let next = start + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(next.into()).await;
                    continue;
                }
                allowed = allowed.min(due - sent);
            }
            buf.clear();
            let mut n = 0u64;
            while n < allowed && (n == 0 || buf.len() < plan.batch_bytes) {
                method::encode_basic_publish_frame(
                    CHANNEL,
                    "",
                    &queue,
                    plan.mandatory,
                    false,
                    &mut buf,
                );
                let k = ((sent + n) % header_frames.len() as u64) as usize;
                buf.extend_from_slice(header_frames.get(k).map_or(&[][..], |h| &h[..]));
                write_stamp(&mut body, plan.run_tag);
                frame::encode_body_frames(CHANNEL, &body, frame_max, &mut buf);
                n += 1;
            }
            writer.write_all(&buf).await.context("writing publishes")?;
            sent += n;
            if let Some(p) = shared.published.get(idx) {
                p.store(sent, Ordering::Relaxed);
            }
            // A socket that always accepts the write never returns Pending; yielding lets
            // the runtime poll its I/O and timer drivers, or other connections starve.
            tokio::task::yield_now().await;
        }
        if plan.window.is_some() {
            loop {
                let notified = progress.notified();
                if confirms.lock().confirmed >= sent {
                    break;
                }
                notified.await;
            }
        }
        if let Some(d) = shared.producer_done_ns.get(idx) {
            d.store(stats::now_ns().max(1), Ordering::Release);
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::select! {
        r = write_side => r?,
        r = read_side => return r,
    }
    // A polite close, waiting as long as the no-progress timeout: without confirms the broker
    // may still be reading a backlog of publishes (RabbitMQ's flow control reads the socket
    // at the queue's pace), and it drops what it has not routed yet when the connection goes
    // away abruptly; it answers close-ok only once it has handled them.
    let _ = (Conn {
        reader,
        writer,
        frame_max,
    })
    .close_within(wait)
    .await;
    Ok(())
}

/// A frame as the consumer sees it: the per-message frames parsed by hand, the rest decoded.
#[derive(Debug)]
enum Incoming {
    /// `basic.deliver` with its delivery tag.
    Deliver(u64),
    /// A content header with the body size.
    Header(u64),
    /// A body frame: its length and its first bytes (up to the stamp's length).
    Body(usize, [u8; super::STAMP_LEN], usize),
    Heartbeat,
    /// Any other method.
    Other(Method),
}

/// Takes the next complete frame off `buf` (`None`: need more bytes).
fn next_incoming(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Incoming>> {
    let Some(head) = buf.get(..7) else {
        return Ok(None);
    };
    let kind = head[0];
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if frame_max > 0 && size + 8 > frame_max as usize {
        bail!(
            "the broker sent a {}-byte frame, over frame_max {frame_max}",
            size + 8
        );
    }
    let total = 7 + size + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        bail!("frame without the frame-end octet");
    }
    let payload = &buf[7..7 + size];
    let out = match kind {
        FRAME_METHOD if payload.get(..4) == Some(&[0, 60, 0, 60]) => {
            // basic.deliver: consumer-tag (shortstr), delivery-tag (u64), ...
            let tag_len = usize::from(*payload.get(4).unwrap_or(&0));
            let at = 5 + tag_len;
            let tag = payload
                .get(at..at + 8)
                .map(|b| {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(b);
                    u64::from_be_bytes(t)
                })
                .ok_or_else(|| anyhow!("truncated basic.deliver"))?;
            Incoming::Deliver(tag)
        }
        FRAME_METHOD => {
            let mut frame = buf.split_to(total);
            frame.advance(7);
            frame.truncate(size);
            return Ok(Some(Incoming::Other(
                Method::decode(frame.freeze()).context("decoding a method from the broker")?,
            )));
        }
        FRAME_HEADER => {
            let b = payload
                .get(4..12)
                .ok_or_else(|| anyhow!("truncated content header"))?;
            let mut s = [0u8; 8];
            s.copy_from_slice(b);
            Incoming::Header(u64::from_be_bytes(s))
        }
        FRAME_BODY => {
            let mut head = [0u8; super::STAMP_LEN];
            let n = payload.len().min(super::STAMP_LEN);
            head[..n].copy_from_slice(&payload[..n]);
            Incoming::Body(payload.len(), head, n)
        }
        FRAME_HEARTBEAT => Incoming::Heartbeat,
        other => bail!("unknown frame type {other}"),
    };
    buf.advance(total);
    Ok(Some(out))
}

/// Appends a `basic.ack` frame.
fn put_ack(out: &mut BytesMut, tag: u64, multiple: bool) {
    put_settle(out, 80, tag, u8::from(multiple));
}

/// Appends a `basic.nack` frame with requeue=false (the message is dead-lettered or dropped).
fn put_reject(out: &mut BytesMut, tag: u64, multiple: bool) {
    put_settle(out, 120, tag, u8::from(multiple));
}

/// Appends a `basic.ack` (method 80) or `basic.nack` (120) frame: delivery tag, then the bits
/// (multiple = bit 0, nack's requeue = bit 1).
fn put_settle(out: &mut BytesMut, method: u16, tag: u64, bits: u8) {
    out.put_u8(FRAME_METHOD);
    out.put_u16(CHANNEL);
    out.put_u32(13);
    out.put_u16(60);
    out.put_u16(method);
    out.put_u64(tag);
    out.put_u8(bits);
    out.put_u8(FRAME_END);
}

/// Consumer `idx`: consumes its queue (or `--consume-queue`) until told to stop, recording
/// latency and acking.
pub(crate) async fn consumer(
    shared: Arc<Shared>,
    idx: usize,
    ready: mpsc::Sender<()>,
) -> Result<()> {
    consumer_inner(&shared, idx, ready, false)
        .await
        .with_context(|| format!("consumer {idx}"))
}

/// Rejecter `idx` (`--rejecters`): consumes queue `idx % queues` until told to stop and
/// rejects every message (requeue=false), counting them as rejected, not consumed: one
/// `basic.nack` with multiple=true for the deliveries of each socket read.
pub(crate) async fn rejecter(
    shared: Arc<Shared>,
    idx: usize,
    ready: mpsc::Sender<()>,
) -> Result<()> {
    consumer_inner(&shared, idx, ready, true)
        .await
        .with_context(|| format!("rejecter {idx}"))
}

async fn consumer_inner(
    shared: &Shared,
    idx: usize,
    ready: mpsc::Sender<()>,
    reject: bool,
) -> Result<()> {
    let plan = &shared.plan;
    let wait = plan.timeout;
    let role = if reject { "rejecter" } else { "consumer" };
    let mut conn = Conn::open(
        amqp_uri(plan)?,
        plan.tls.as_ref(),
        wait,
        &format!("perf {role} {idx}"),
    )
    .await?;
    let queue = match (&plan.consume_queue, reject) {
        (Some(q), false) => q.clone(),
        _ => plan.queue_name(idx % plan.queues),
    };
    // Rejecters always settle explicitly: an auto-acked message cannot be rejected.
    let auto_ack = plan.auto_ack && !reject;
    if !auto_ack && plan.prefetch > 0 {
        let qos = BasicQos {
            prefetch_count: plan.prefetch,
            ..Default::default()
        };
        rpc(
            &mut conn,
            Method::BasicQos(qos),
            wait,
            "basic.qos-ok",
            |m| matches!(m, Method::BasicQosOk(_)).then_some(()),
        )
        .await?;
    }
    let consume = BasicConsume {
        queue: queue.clone(),
        consumer_tag: format!("perf-{}{idx}", if reject { 'r' } else { 'c' }),
        no_ack: auto_ack,
        ..Default::default()
    };
    rpc(
        &mut conn,
        Method::BasicConsume(consume),
        wait,
        "basic.consume-ok",
        |m| matches!(m, Method::BasicConsumeOk(_)).then_some(()),
    )
    .await
    .with_context(|| format!("consuming queue {queue:?}"))?;
    ready
        .send(())
        .await
        .map_err(|_| anyhow!("the run was abandoned"))?;

    // Acknowledge every `ack_every` messages with multiple=true (never more than the prefetch,
    // or the broker would stop delivering before the ack).
    let ack_every = plan.multi_ack_every.map(|n| {
        if plan.prefetch > 0 {
            n.min(u64::from(plan.prefetch))
        } else {
            n
        }
    });
    let mut unacked = 0u64;
    let mut last_tag = 0u64;
    let mut acks = BytesMut::with_capacity(16 * 1024);
    let mut latencies: Vec<u64> = Vec::with_capacity(1024);
    let mut in_delivery = false;
    let mut tag = 0u64;
    let mut remaining: Option<u64> = None;
    let mut head = [0u8; super::STAMP_LEN];
    let mut head_len = 0usize;
    let frame_max = conn.reader.frame_max;
    loop {
        let got = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            r = conn.reader.fill(None) => r?,
        };
        let now = stats::now_ns();
        let (mut ours, mut foreign) = (0u64, 0u64);
        latencies.clear();
        acks.clear();
        while let Some(f) = next_incoming(&mut conn.reader.buf, frame_max)? {
            let complete = match f {
                Incoming::Deliver(t) => {
                    if in_delivery {
                        bail!("basic.deliver before the previous message's content was complete");
                    }
                    in_delivery = true;
                    tag = t;
                    head_len = 0;
                    false
                }
                Incoming::Header(size) => {
                    if !in_delivery || remaining.is_some() {
                        bail!("unexpected content header");
                    }
                    remaining = Some(size);
                    size == 0
                }
                Incoming::Body(len, bytes, n) => {
                    let left = remaining
                        .and_then(|r| r.checked_sub(len as u64))
                        .ok_or_else(|| anyhow!("unexpected or oversized body frame"))?;
                    if head_len == 0 {
                        head = bytes;
                        head_len = n;
                    }
                    remaining = Some(left);
                    left == 0
                }
                Incoming::Heartbeat => false,
                Incoming::Other(m) => match check_close(m)? {
                    Method::BasicCancel(_) => bail!("the broker cancelled the consumer"),
                    _ => false,
                },
            };
            if complete {
                in_delivery = false;
                remaining = None;
                match read_stamp(&head[..head_len], plan.run_tag, now) {
                    Stamp::Latency(ns) => {
                        ours += 1;
                        latencies.push(ns);
                    }
                    Stamp::Unstamped => ours += 1,
                    Stamp::Foreign => foreign += 1,
                }
                if reject {
                    unacked += 1;
                    last_tag = tag;
                } else if !auto_ack {
                    match ack_every {
                        None => put_ack(&mut acks, tag, false),
                        Some(every) => {
                            unacked += 1;
                            last_tag = tag;
                            if unacked >= every {
                                put_ack(&mut acks, tag, true);
                                unacked = 0;
                            }
                        }
                    }
                }
            }
        }
        if reject && unacked > 0 {
            // Everything this read brought, at once: nothing waits to be dead-lettered.
            put_reject(&mut acks, last_tag, true);
            unacked = 0;
        }
        if !acks.is_empty() {
            conn.writer.write_all(&acks).await.context("writing acks")?;
        }
        if reject {
            shared.rejected.fetch_add(ours + foreign, Ordering::Relaxed);
        } else {
            shared.consumed_batch(idx, ours, foreign, &latencies);
        }
        if got >= BIG_READ {
            // Reads that are always ready never return Pending: let other tasks run.
            tokio::task::yield_now().await;
        }
    }
    if unacked > 0 {
        let mut b = BytesMut::new();
        put_ack(&mut b, last_tag, true);
        let _ = conn.writer.write_all(&b).await;
    }
    let _ = conn.close().await;
    Ok(())
}

/// Idle mode: opens `n` connections with one channel each.
pub(crate) async fn idle(plan: &Plan, n: usize, parallel: usize) -> Result<IdleSet> {
    let uri = Arc::new(amqp_uri(plan)?.clone());
    let tls = plan.tls.clone();
    let wait = plan.timeout;
    let mut goodbye = BytesMut::new();
    frame::encode_method_frame(
        0,
        &Method::ConnectionClose(ConnectionClose {
            reply_code: 200,
            reply_text: "bye".into(),
            ..Default::default()
        }),
        &mut goodbye,
    );
    Ok(super::open_many(n, parallel, goodbye.to_vec(), move |i| {
        let uri = uri.clone();
        let tls = tls.clone();
        async move {
            let conn = Conn::open(&uri, tls.as_ref(), wait, &format!("perf idle {i}"))
                .await
                .with_context(|| format!("idle connection {i}"))?;
            let Conn { reader, writer, .. } = conn;
            Ok(Held::new(reader.io, writer))
        }
    })
    .await)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warren_amqp::method::BasicDeliver;

    #[test]
    fn confirms_count_single_multiple_and_out_of_order_acks() {
        let mut c = Confirms::default();
        assert_eq!(c.ack(2, false), 1);
        c.ack(4, false);
        assert_eq!((c.confirmed, c.watermark), (2, 0));
        assert_eq!(c.ack(3, true), 2); // confirms 1 and 3; 2 was already counted
        assert_eq!((c.confirmed, c.watermark), (4, 4));
        assert_eq!(c.ack(4, false), 0); // duplicate
        c.ack(6, false);
        c.ack(5, false);
        assert_eq!((c.confirmed, c.watermark), (6, 6));
        c.ack(10, true);
        assert_eq!((c.confirmed, c.watermark), (10, 10));
        assert!(c.above.is_empty());
    }

    #[test]
    fn priority_spread_cycles_header_frames() {
        let o = crate::Options {
            priority_spread: Some(3),
            size: 20,
            ..crate::Options::default()
        };
        let frames = header_frames(&Plan::new(&o).unwrap());
        assert_eq!(frames.len(), 3);
        for (p, f) in frames.iter().enumerate() {
            let mut b = BytesMut::from(&f[..]);
            match frame::decode_frame(&mut b, 0).unwrap().unwrap() {
                Frame::Header { header, .. } => {
                    assert_eq!(header.properties.priority, Some(p as u8));
                    assert_eq!(header.body_size, 20);
                }
                other => panic!("{other:?}"),
            }
        }
        let plain = header_frames(&Plan::new(&crate::Options::default()).unwrap());
        assert_eq!(plain.len(), 1);
        let mut nack = BytesMut::new();
        put_reject(&mut nack, 9, true);
        assert!(matches!(
            frame::decode_frame(&mut nack, 0).unwrap().unwrap(),
            Frame::Method { channel: 1, method: Method::BasicNack(n) }
                if n.delivery_tag == 9 && n.multiple && !n.requeue
        ));
    }

    #[test]
    fn hand_parsed_frames_match_the_codec() {
        let mut buf = BytesMut::new();
        method::encode_basic_deliver_frame(1, "perf-c0", 77, false, "", "perf-0", &mut buf);
        let header = ContentHeader {
            class_id: BASIC_CLASS,
            weight: 0,
            body_size: 20,
            properties: BasicProperties::default(),
        };
        frame::encode_header_frame(1, &header, &mut buf);
        let mut body = vec![9u8; 20];
        write_stamp(&mut body, 5);
        frame::encode_body_frames(1, &body, 4096, &mut buf);
        frame::encode_heartbeat_frame(&mut buf);
        frame::encode_method_frame(
            1,
            &Method::BasicDeliver(BasicDeliver::default()),
            &mut BytesMut::new(),
        );
        let mut ack = BytesMut::new();
        put_ack(&mut ack, 77, true);
        let decoded = frame::decode_frame(&mut ack, 0).unwrap().unwrap();
        assert!(matches!(
            decoded,
            Frame::Method { channel: 1, method: Method::BasicAck(a) } if a.delivery_tag == 77 && a.multiple
        ));
        buf.extend_from_slice(&{
            let mut b = BytesMut::new();
            frame::encode_method_frame(
                1,
                &Method::ChannelClose(warren_amqp::method::ChannelClose {
                    reply_code: 404,
                    ..Default::default()
                }),
                &mut b,
            );
            b
        });
        let whole = buf.clone();
        // Byte by byte: partial frames are left alone.
        let mut partial = BytesMut::new();
        let mut seen = Vec::new();
        for b in whole.iter() {
            partial.put_u8(*b);
            while let Some(f) = next_incoming(&mut partial, 0).unwrap() {
                seen.push(f);
            }
        }
        assert!(matches!(seen[0], Incoming::Deliver(77)));
        assert!(matches!(seen[1], Incoming::Header(20)));
        match &seen[2] {
            Incoming::Body(20, head, 12) => {
                assert!(matches!(
                    read_stamp(head, 5, stats::now_ns()),
                    Stamp::Latency(_)
                ));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(seen[3], Incoming::Heartbeat));
        assert!(
            matches!(&seen[4], Incoming::Other(Method::ChannelClose(c)) if c.reply_code == 404)
        );
        assert_eq!(seen.len(), 5);
        // Oversized and malformed frames are errors.
        let mut big = whole.clone();
        assert!(next_incoming(&mut big, 16).is_err());
        let mut bad = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 0, 0][..]);
        assert!(next_incoming(&mut bad, 0).is_err());
    }
}
