//! The MQTT 3.1.1 side of `warren perf`: publishers (one pre-encoded PUBLISH patched per
//! message, pipelined writes, an inflight window for QoS 1/2), subscribers (hand-parsed
//! PUBLISH, acks batched per read) and idle connections, on raw sockets and the
//! `warren_mqtt` codec for the control packets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use warren_mqtt::{Codec, Connect, Packet, ProtocolVersion, QoS, Subscribe, SubscribeFilter};

use super::transport::{self, Held, ReadHalf, WriteHalf};
use super::uri::MqttUri;
use super::{read_stamp, stats, wait_go, write_stamp, Go, IdleSet, Plan, Shared, Stamp, STAMP_LEN};

/// Protocol version of every connection.
const VERSION: ProtocolVersion = ProtocolVersion::V311;
/// Packet types (high nibble of the first byte).
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
/// DISCONNECT, the whole packet.
const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Reads server → client packets from one half of a connection.
struct Reader {
    io: ReadHalf,
    buf: BytesMut,
    codec: Codec,
    max_packet: usize,
}

impl Reader {
    /// Reads more bytes, waiting at most `wait` (`None`: forever); errors on EOF and timeout.
    /// Returns the number of bytes read.
    async fn fill(&mut self, wait: Option<Duration>) -> Result<usize> {
        transport::read_more(&mut self.io, &mut self.buf, wait).await
    }

    /// Next packet (control packets only), waiting at most `wait`.
    async fn next_packet(&mut self, wait: Duration) -> Result<Packet> {
        loop {
            match next_in(&mut self.buf, &mut self.codec, self.max_packet)? {
                Some(In::Other(p)) => return Ok(*p),
                Some(other) => bail!("unexpected {other:?} during the handshake"),
                None => {
                    self.fill(Some(wait)).await?;
                }
            }
        }
    }
}

/// A packet as publishers and subscribers see it: the per-message ones parsed by hand.
#[derive(Debug)]
enum In {
    /// PUBLISH: QoS, packet id, the first bytes of the payload and how many there are.
    Publish(u8, u16, [u8; STAMP_LEN], usize),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP (type, packet id).
    Ack(u8, u16),
    /// Anything else, decoded by the codec.
    Other(Box<Packet>),
}

/// Takes the next complete packet off `buf` (`None`: need more bytes).
fn next_in(buf: &mut BytesMut, codec: &mut Codec, max: usize) -> Result<Option<In>> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    // Remaining length: up to four 7-bit groups.
    let mut remaining = 0usize;
    let mut header_len = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * (header_len - 1));
        header_len += 1;
        if b & 0x80 == 0 {
            break;
        }
        if header_len > 4 {
            bail!("malformed remaining length from the broker");
        }
    }
    let total = header_len + remaining;
    if total > max {
        bail!("the broker sent a {total}-byte packet (limit {max})");
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let body = &buf[header_len..total];
    let kind = byte1 >> 4;
    let out = match kind {
        PUBLISH => {
            let qos = (byte1 >> 1) & 3;
            if qos == 3 {
                bail!("PUBLISH with QoS 3 from the broker");
            }
            let topic_len = body
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or_else(|| anyhow!("truncated PUBLISH"))?;
            let mut at = 2 + topic_len;
            let mut id = 0;
            if qos > 0 {
                id = body
                    .get(at..at + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or_else(|| anyhow!("truncated PUBLISH"))?;
                at += 2;
            }
            let payload = body.get(at..).ok_or_else(|| anyhow!("truncated PUBLISH"))?;
            let n = payload.len().min(STAMP_LEN);
            let mut head = [0u8; STAMP_LEN];
            head[..n].copy_from_slice(&payload[..n]);
            In::Publish(qos, id, head, n)
        }
        PUBACK | PUBREC | PUBREL | PUBCOMP if remaining == 2 => {
            In::Ack(kind, u16::from_be_bytes([body[0], body[1]]))
        }
        _ => {
            return codec
                .decode(buf)
                .context("decoding a packet from the broker")?
                .map(|p| Some(In::Other(Box::new(p))))
                .ok_or_else(|| anyhow!("internal: codec wanted more of a complete packet"));
        }
    };
    buf.advance(total);
    Ok(Some(out))
}

/// Appends a 4-byte ack packet (PUBACK, PUBREC, PUBREL or PUBCOMP).
fn put_ack(out: &mut BytesMut, kind: u8, id: u16) {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    out.put_u8((kind << 4) | flags);
    out.put_u8(2);
    out.put_u16(id);
}

/// An open MQTT connection.
struct Conn {
    reader: Reader,
    writer: WriteHalf,
}

fn mqtt_uri(plan: &Plan) -> Result<&MqttUri> {
    plan.mqtt
        .as_ref()
        .ok_or_else(|| anyhow!("internal: no MQTT URI"))
}

/// Connects (TCP, TLS, WebSocket as the URI says; clean session, keep alive off) and waits
/// for an accepting CONNACK. `idle`: the connection will carry nothing (idle mode).
async fn open(
    uri: &MqttUri,
    tls: Option<&Arc<rustls::ClientConfig>>,
    client_id: &str,
    max_packet: usize,
    wait: Duration,
    idle: bool,
) -> Result<Conn> {
    let endpoint = transport::Endpoint {
        idle,
        ..uri.endpoint(tls)
    };
    let (r, mut writer) = transport::connect(&endpoint, wait).await?;
    let mut reader = Reader {
        io: r,
        buf: BytesMut::with_capacity(4096),
        codec: Codec::new_client(VERSION, max_packet),
        max_packet,
    };
    let connect = Connect {
        protocol: VERSION,
        client_id: client_id.to_string(),
        clean_start: true,
        keep_alive: 0,
        username: uri.user.clone(),
        password: uri
            .user
            .as_ref()
            .and(uri.password.as_ref())
            .map(|p| Bytes::from(p.clone().into_bytes())),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    Codec::encode_with(VERSION, &Packet::Connect(connect), &mut out).context("encoding CONNECT")?;
    writer.write_all(&out).await.context("writing CONNECT")?;
    match reader
        .next_packet(wait)
        .await
        .context("waiting for CONNACK")?
    {
        Packet::ConnAck(c) if c.reason == 0 => {}
        Packet::ConnAck(c) => bail!(
            "the broker refused the connection: CONNACK reason 0x{:02x}",
            c.reason
        ),
        p => bail!("expected CONNACK, got {}", p.name()),
    }
    Ok(Conn { reader, writer })
}

/// One PUBLISH packet encoded once, copied per message with packet id and stamp patched in.
struct Template {
    bytes: Vec<u8>,
    /// Offset of the packet id (QoS 1/2).
    packet_id_at: Option<usize>,
    /// Offset of the payload.
    payload_at: usize,
}

impl Template {
    fn new(topic: &str, qos: u8, size: usize) -> Result<Template> {
        let topic_len = u16::try_from(topic.len()).map_err(|_| anyhow!("topic too long"))?;
        let remaining = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + size;
        if remaining > 268_435_455 {
            bail!("message too large for MQTT");
        }
        let mut bytes = Vec::with_capacity(remaining + 5);
        bytes.push((PUBLISH << 4) | (qos << 1));
        let mut r = remaining;
        loop {
            let mut b = (r % 128) as u8;
            r /= 128;
            if r > 0 {
                b |= 0x80;
            }
            bytes.push(b);
            if r == 0 {
                break;
            }
        }
        bytes.extend_from_slice(&topic_len.to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
        let packet_id_at = (qos > 0).then(|| {
            bytes.extend_from_slice(&[0, 1]);
            bytes.len() - 2
        });
        let payload_at = bytes.len();
        bytes.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        Ok(Template {
            bytes,
            packet_id_at,
            payload_at,
        })
    }

    /// Appends the packet with `packet_id` and a fresh stamp.
    fn append(&self, packet_id: u16, run_tag: u32, out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let packet = &mut out[start..];
        if let Some(at) = self.packet_id_at {
            packet[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        write_stamp(&mut packet[self.payload_at..], run_tag);
    }
}

/// QoS 1/2 publishes awaiting their acknowledgement, by packet id.
struct Inflight {
    /// 0: free, 1: awaiting PUBACK/PUBREC, 2: awaiting PUBCOMP.
    state: Vec<u8>,
    outstanding: u64,
    /// PUBRELs to send (QoS 2).
    pubrel: Vec<u16>,
}

impl Inflight {
    fn new() -> Inflight {
        Inflight {
            state: vec![0; usize::from(u16::MAX) + 1],
            outstanding: 0,
            pubrel: Vec::new(),
        }
    }

    fn sent(&mut self, id: u16) {
        if let Some(s) = self.state.get_mut(usize::from(id)) {
            *s = 1;
        }
        self.outstanding += 1;
    }

    /// Applies an ack from the broker; returns whether a publish completed.
    fn ack(&mut self, kind: u8, id: u16, qos: u8) -> Result<bool> {
        let slot = self
            .state
            .get_mut(usize::from(id))
            .ok_or_else(|| anyhow!("packet id {id} out of range"))?;
        match (kind, qos, *slot) {
            (PUBACK, 1, 1) | (PUBCOMP, 2, 2) => {
                *slot = 0;
                self.outstanding -= 1;
                Ok(true)
            }
            (PUBREC, 2, 1) => {
                *slot = 2;
                self.pubrel.push(id);
                Ok(false)
            }
            // A repeated PUBREC after our PUBREL: send PUBREL again.
            (PUBREC, 2, 2) => {
                self.pubrel.push(id);
                Ok(false)
            }
            _ => bail!(
                "unexpected {} for packet id {id} (QoS {qos} publish, state {})",
                ack_name(kind),
                *slot
            ),
        }
    }
}

fn ack_name(kind: u8) -> &'static str {
    match kind {
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        _ => "packet",
    }
}

/// The packet id of the `seq`-th QoS 1/2 publish: cycles through 1..=65535.
fn packet_id(seq: u64) -> u16 {
    u16::try_from(seq % u64::from(u16::MAX) + 1).unwrap_or(1)
}

fn max_packet(plan: &Plan) -> usize {
    plan.size + 64 * 1024
}

/// Publisher `idx`: publishes to `perf/<idx % queues>` until `--count` or `--duration`, flat
/// out or at `--rate`, keeping at most the window of QoS 1/2 publishes unacknowledged.
pub(crate) async fn publisher(
    shared: Arc<Shared>,
    idx: usize,
    ready: mpsc::Sender<()>,
    mut go: Go,
) -> Result<()> {
    publisher_inner(&shared, idx, ready, &mut go)
        .await
        .with_context(|| format!("publisher {idx}"))
}

async fn publisher_inner(
    shared: &Shared,
    idx: usize,
    ready: mpsc::Sender<()>,
    go: &mut Go,
) -> Result<()> {
    let plan = &shared.plan;
    let client_id = format!("perf-{:08x}-p{idx}", plan.run_tag);
    let Conn {
        mut reader,
        mut writer,
    } = open(
        mqtt_uri(plan)?,
        plan.tls.as_ref(),
        &client_id,
        max_packet(plan),
        plan.timeout,
        false,
    )
    .await?;
    let qos = plan.qos;
    let template = Template::new(&plan.topic(idx % plan.queues), qos, plan.size)?;
    ready
        .send(())
        .await
        .map_err(|_| anyhow!("the run was abandoned"))?;
    let start = wait_go(go).await?;

    let inflight = Mutex::new(Inflight::new());
    let progress = Notify::new();
    let read_side = async {
        loop {
            let mut completed = 0u64;
            while let Some(p) = next_in(&mut reader.buf, &mut reader.codec, reader.max_packet)? {
                match p {
                    In::Ack(kind @ (PUBACK | PUBREC | PUBCOMP), id) => {
                        if inflight.lock().ack(kind, id, qos)? {
                            completed += 1;
                        }
                    }
                    In::Other(p) if matches!(*p, Packet::PingResp) => {}
                    other => bail!("unexpected {other:?} on the publisher connection"),
                }
            }
            if completed > 0 {
                shared.confirmed.fetch_add(completed, Ordering::Relaxed);
            }
            progress.notify_one();
            if reader.fill(None).await? >= super::amqp::BIG_READ {
                tokio::task::yield_now().await;
            }
        }
    };
    let write_side = async {
        let count = plan.count.unwrap_or(u64::MAX);
        let deadline = plan.duration.map(|d| start + d);
        let mut buf = BytesMut::with_capacity(plan.batch_bytes + template.bytes.len());
        let mut sent = 0u64;
        let mut refill = super::Refill::default();
        // Queued PUBRELs go out with the next write.
        let take_pubrels = |buf: &mut BytesMut| {
            for id in inflight.lock().pubrel.drain(..) {
                put_ack(buf, PUBREL, id);
            }
        };
        while sent < count && super::before(deadline) {
            buf.clear();
            let mut allowed = count - sent;
            if let Some(window) = plan.window.filter(|_| qos > 0) {
                let outstanding = loop {
                    let notified = progress.notified();
                    take_pubrels(&mut buf);
                    let outstanding = inflight.lock().outstanding;
                    if refill.ready(outstanding, window) {
                        break outstanding;
                    }
                    if !buf.is_empty() {
                        writer.write_all(&buf).await.context("writing PUBRELs")?;
                        buf.clear();
                    }
                    notified.await;
                };
                allowed = allowed.min(window - outstanding);
            }
            if let Some(rate) = plan.rate {
                let due = (start.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
                if due <= sent {
                    if !buf.is_empty() {
                        writer.write_all(&buf).await.context("writing PUBRELs")?;
                    }
                    let next = start + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::time::sleep_until(next.into()).await;
                    continue;
                }
                allowed = allowed.min(due - sent);
            }
            let mut n = 0u64;
            while n < allowed && (n == 0 || buf.len() < plan.batch_bytes) {
                let id = packet_id(sent + n);
                if qos > 0 {
                    inflight.lock().sent(id);
                }
                template.append(id, plan.run_tag, &mut buf);
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
        if qos > 0 {
            loop {
                let notified = progress.notified();
                buf.clear();
                take_pubrels(&mut buf);
                if !buf.is_empty() {
                    writer.write_all(&buf).await.context("writing PUBRELs")?;
                }
                if inflight.lock().outstanding == 0 {
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
    let _ = writer.write_all(&DISCONNECT).await;
    let _ = writer.shutdown().await;
    Ok(())
}

/// Subscriber `idx`: subscribes to `perf/<idx % queues>` and receives until told to stop.
pub(crate) async fn subscriber(
    shared: Arc<Shared>,
    idx: usize,
    ready: mpsc::Sender<()>,
) -> Result<()> {
    subscriber_inner(&shared, idx, ready)
        .await
        .with_context(|| format!("subscriber {idx}"))
}

async fn subscriber_inner(shared: &Shared, idx: usize, ready: mpsc::Sender<()>) -> Result<()> {
    let plan = &shared.plan;
    let client_id = format!("perf-{:08x}-c{idx}", plan.run_tag);
    let Conn {
        mut reader,
        mut writer,
    } = open(
        mqtt_uri(plan)?,
        plan.tls.as_ref(),
        &client_id,
        max_packet(plan),
        plan.timeout,
        false,
    )
    .await?;
    let requested = QoS::from_u8(plan.qos).ok_or_else(|| anyhow!("bad QoS {}", plan.qos))?;
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: plan.topic(idx % plan.queues),
            qos: requested,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = BytesMut::new();
    Codec::encode_with(VERSION, &Packet::Subscribe(sub), &mut out).context("encoding SUBSCRIBE")?;
    writer.write_all(&out).await.context("writing SUBSCRIBE")?;
    match reader
        .next_packet(plan.timeout)
        .await
        .context("waiting for SUBACK")?
    {
        Packet::SubAck(s) => match s.reasons.first().copied() {
            Some(code) if code == plan.qos => {}
            Some(code) if code < 0x80 => {
                if idx == 0 {
                    eprintln!(
                        "warren perf: warning: the broker granted QoS {code}, asked for {}",
                        plan.qos
                    );
                }
            }
            Some(code) => bail!("the broker refused the subscription: SUBACK code 0x{code:02x}"),
            None => bail!("SUBACK without a return code"),
        },
        p => bail!("expected SUBACK, got {}", p.name()),
    }
    ready
        .send(())
        .await
        .map_err(|_| anyhow!("the run was abandoned"))?;

    let mut acks = BytesMut::with_capacity(16 * 1024);
    let mut latencies: Vec<u64> = Vec::with_capacity(1024);
    loop {
        let got = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            r = reader.fill(None) => r?,
        };
        let now = stats::now_ns();
        let (mut ours, mut foreign) = (0u64, 0u64);
        latencies.clear();
        acks.clear();
        while let Some(p) = next_in(&mut reader.buf, &mut reader.codec, reader.max_packet)? {
            match p {
                In::Publish(qos, id, head, n) => {
                    match read_stamp(&head[..n], plan.run_tag, now) {
                        Stamp::Latency(ns) => {
                            ours += 1;
                            latencies.push(ns);
                        }
                        Stamp::Unstamped => ours += 1,
                        Stamp::Foreign => foreign += 1,
                    }
                    match qos {
                        1 => put_ack(&mut acks, PUBACK, id),
                        2 => put_ack(&mut acks, PUBREC, id),
                        _ => {}
                    }
                }
                In::Ack(PUBREL, id) => put_ack(&mut acks, PUBCOMP, id),
                In::Other(p) if matches!(*p, Packet::PingResp) => {}
                other => bail!("unexpected {other:?} on the subscriber connection"),
            }
        }
        if !acks.is_empty() {
            writer.write_all(&acks).await.context("writing acks")?;
        }
        shared.consumed_batch(idx, ours, foreign, &latencies);
        if got >= super::amqp::BIG_READ {
            // Reads that are always ready never return Pending: let other tasks run.
            tokio::task::yield_now().await;
        }
    }
    let _ = writer.write_all(&DISCONNECT).await;
    let _ = writer.shutdown().await;
    Ok(())
}

/// Idle mode: opens `n` MQTT connections (CONNECT, CONNACK).
pub(crate) async fn idle(plan: &Plan, n: usize, parallel: usize) -> Result<IdleSet> {
    let uri = Arc::new(mqtt_uri(plan)?.clone());
    let tls = plan.tls.clone();
    let wait = plan.timeout;
    let tag = plan.run_tag;
    Ok(
        super::open_many(n, parallel, DISCONNECT.to_vec(), move |i| {
            let uri = uri.clone();
            let tls = tls.clone();
            async move {
                let id = format!("perf-{tag:08x}-i{i}");
                let conn = open(&uri, tls.as_ref(), &id, 4096, wait, true)
                    .await
                    .with_context(|| format!("idle connection {i}"))?;
                Ok(Held::new(conn.reader.io, conn.writer))
            }
        })
        .await,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use warren_mqtt::{PubAck, Publish};

    fn codec() -> Codec {
        Codec::new_client(VERSION, 1 << 20)
    }

    #[test]
    fn templates_decode_with_the_codec() {
        for qos in [0u8, 1, 2] {
            for size in [0usize, 11, 12, 64, 300, 20_000] {
                let t = Template::new("perf/3", qos, size).unwrap();
                let mut buf = BytesMut::new();
                t.append(0xBEEF, 42, &mut buf);
                let Some(Packet::Publish(p)) = codec().decode(&mut buf).unwrap() else {
                    panic!("not a PUBLISH");
                };
                assert_eq!(p.topic, "perf/3");
                assert_eq!(p.qos.as_u8(), qos);
                assert_eq!(p.packet_id, if qos == 0 { 0 } else { 0xBEEF });
                assert_eq!(p.payload.len(), size);
                if size >= STAMP_LEN {
                    assert!(matches!(
                        read_stamp(&p.payload, 42, stats::now_ns()),
                        Stamp::Latency(_)
                    ));
                }
            }
        }
    }

    #[test]
    fn hand_parsing_matches_the_codec() {
        let mut buf = BytesMut::new();
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            topic: "perf/0".into(),
            packet_id: 9,
            payload: Bytes::from(vec![7u8; 200]),
            ..Default::default()
        };
        Codec::encode_with(VERSION, &Packet::Publish(publish), &mut buf).unwrap();
        Codec::encode_with(
            VERSION,
            &Packet::PubAck(PubAck {
                packet_id: 300,
                ..Default::default()
            }),
            &mut buf,
        )
        .unwrap();
        put_ack(&mut buf, PUBREL, 5);
        Codec::encode_with(VERSION, &Packet::PingResp, &mut buf).unwrap();
        let whole = buf.clone();
        let mut c = codec();
        let mut partial = BytesMut::new();
        let mut seen = Vec::new();
        for b in whole.iter() {
            partial.put_u8(*b);
            while let Some(p) = next_in(&mut partial, &mut c, 1 << 20).unwrap() {
                seen.push(p);
            }
        }
        assert!(matches!(seen[0], In::Publish(1, 9, _, 12)));
        assert!(matches!(seen[1], In::Ack(PUBACK, 300)));
        assert!(matches!(seen[2], In::Ack(PUBREL, 5)));
        assert!(matches!(&seen[3], In::Other(p) if matches!(**p, Packet::PingResp)));
        assert_eq!(seen.len(), 4);
        let mut big = whole.clone();
        assert!(next_in(&mut big, &mut codec(), 10).is_err());
        // The PUBREL we encode is what the codec expects.
        let mut rel = BytesMut::new();
        put_ack(&mut rel, PUBREL, 77);
        let mut server = Codec::new(1 << 20);
        let mut connect = BytesMut::new();
        Codec::encode_with(VERSION, &Packet::Connect(Connect::default()), &mut connect).unwrap();
        server.decode(&mut connect).unwrap();
        assert!(matches!(
            server.decode(&mut rel).unwrap(),
            Some(Packet::PubRel(r)) if r.packet_id == 77
        ));
    }

    #[test]
    fn inflight_tracks_qos1_and_qos2() {
        let mut f = Inflight::new();
        f.sent(7);
        assert!(f.ack(PUBACK, 8, 1).is_err());
        assert!(f.ack(PUBACK, 7, 1).unwrap());
        assert!(f.ack(PUBACK, 7, 1).is_err());
        f.sent(9);
        assert!(!f.ack(PUBREC, 9, 2).unwrap());
        assert_eq!(f.pubrel, vec![9]);
        assert!(f.ack(PUBCOMP, 9, 2).unwrap());
        assert_eq!(f.outstanding, 0);
        assert_eq!(packet_id(0), 1);
        assert_eq!(packet_id(65_534), 65_535);
        assert_eq!(packet_id(65_535), 1);
    }
}
