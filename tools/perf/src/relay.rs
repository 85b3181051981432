//! `warren relay`: a loopback relay that checks the load tool itself.
//!
//! It speaks just enough AMQP 0-9-1 and MQTT 3.1.1 for `warren perf` and forwards every
//! message straight to the consumers of its queue (AMQP, round-robin) or the subscribers of
//! its topic (MQTT, verbatim), with no routing tables, no queues, no acknowledgement
//! tracking and no storage. Whatever rate `warren perf` reaches against it is the client's
//! ceiling on this machine; comparing it with the rate against a broker shows whether the
//! client or the broker was the bottleneck. It is not a broker: it never queues (a message
//! with no consumer is dropped), ignores acks, and confirms publishes at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use warren_amqp::constants::PROTOCOL_HEADER;
use warren_amqp::frame::{self, Frame};
use warren_amqp::method::{self as m, Method};
use warren_amqp::table::FieldTable;

/// Options of `warren relay`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayOptions {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// AMQP port (0 = any free port).
    #[arg(long, default_value_t = 5673)]
    pub amqp_port: u16,
    /// MQTT port (0 = any free port).
    #[arg(long, default_value_t = 1884)]
    pub mqtt_port: u16,
}

/// Runs the relay until Ctrl-C.
pub fn cli(options: &RelayOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warren relay: error: building the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren relay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The running relay: its addresses, and a handle that stops it when dropped.
pub struct Relay {
    /// Where AMQP clients connect.
    pub amqp_addr: SocketAddr,
    /// Where MQTT clients connect.
    pub mqtt_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(options: RelayOptions) -> Result<()> {
    let relay = start(&options).await?;
    println!(
        "relay: AMQP on {}, MQTT on {}",
        relay.amqp_addr, relay.mqtt_addr
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

/// Starts the relay's listeners (port 0 picks a free port).
pub async fn start(options: &RelayOptions) -> Result<Relay> {
    let routes = Arc::new(Routes::default());
    let amqp = TcpListener::bind((options.bind, options.amqp_port))
        .await
        .context("binding the AMQP port")?;
    let mqtt = TcpListener::bind((options.bind, options.mqtt_port))
        .await
        .context("binding the MQTT port")?;
    Ok(Relay {
        amqp_addr: amqp.local_addr()?,
        mqtt_addr: mqtt.local_addr()?,
        tasks: vec![
            tokio::spawn(accept(amqp, routes.clone(), Protocol::Amqp)),
            tokio::spawn(accept(mqtt, routes, Protocol::Mqtt)),
        ],
    })
}

#[derive(Clone, Copy)]
enum Protocol {
    Amqp,
    Mqtt,
}

async fn accept(listener: TcpListener, routes: Arc<Routes>, protocol: Protocol) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        tokio::spawn(async move {
            let result = match protocol {
                Protocol::Amqp => amqp_connection(stream, &routes).await,
                Protocol::Mqtt => mqtt_connection(stream, &routes).await,
            };
            if let Err(e) = result {
                eprintln!("relay: connection ended: {e:#}");
            }
        });
    }
}

/// Where messages go: AMQP consumers by queue name, MQTT subscribers by exact topic.
#[derive(Default)]
struct Routes {
    queues: Mutex<HashMap<String, QueueRoute>>,
    topics: Mutex<HashMap<String, Vec<Sink>>>,
}

#[derive(Default)]
struct QueueRoute {
    consumers: Vec<AmqpConsumer>,
    next: usize,
}

#[derive(Clone)]
struct AmqpConsumer {
    sink: Sink,
    channel: u16,
    tag: Arc<str>,
}

/// A connection's outgoing bytes, written by its writer task.
type Sink = UnboundedSender<Bytes>;

/// Removes a connection's consumers and subscriptions from the routes when it ends, so the
/// next run on the same queue names does not lose messages to a closed connection.
struct Registration<'a> {
    routes: &'a Routes,
    sink: Sink,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        for route in self.routes.queues.lock().values_mut() {
            route.consumers.retain(|c| !c.sink.same_channel(&self.sink));
            route.next = 0;
        }
        for subscribers in self.routes.topics.lock().values_mut() {
            subscribers.retain(|s| !s.same_channel(&self.sink));
        }
    }
}

/// Splits the socket: the returned sender feeds a task that writes everything sent to it,
/// coalescing what is waiting into one write. The registration removes the connection from
/// the routes when dropped.
fn writer(
    stream: TcpStream,
    routes: &Routes,
) -> (tokio::net::tcp::OwnedReadHalf, Sink, Registration<'_>) {
    let (read, write) = stream.into_split();
    let (sink, queue) = unbounded_channel();
    tokio::spawn(write_all(write, queue));
    let registration = Registration {
        routes,
        sink: sink.clone(),
    };
    (read, sink, registration)
}

async fn write_all(mut write: OwnedWriteHalf, mut queue: UnboundedReceiver<Bytes>) {
    let mut buffer = BytesMut::new();
    while let Some(first) = queue.recv().await {
        buffer.extend_from_slice(&first);
        while buffer.len() < 256 * 1024 {
            match queue.try_recv() {
                Ok(more) => buffer.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if write.write_all(&buffer).await.is_err() {
            return;
        }
        buffer.clear();
    }
}

fn method_frame(channel: u16, method: &Method) -> Bytes {
    let mut out = BytesMut::new();
    frame::encode_method_frame(channel, method, &mut out);
    out.freeze()
}

/// A publish being assembled on one channel.
struct Publishing {
    routing_key: String,
    header: Option<Bytes>,
    body_size: u64,
    received: u64,
    /// Body frame payloads, forwarded as they came.
    body: Vec<Bytes>,
}

#[derive(Default)]
struct AmqpChannel {
    confirm: bool,
    published: u64,
    confirmed: u64,
    publishing: Option<Publishing>,
}

async fn amqp_connection(stream: TcpStream, routes: &Routes) -> Result<()> {
    let (mut read, sink, _registration) = writer(stream, routes);
    let mut buffer = BytesMut::new();
    while buffer.len() < PROTOCOL_HEADER.len() {
        super::read_more(&mut read, &mut buffer, None).await?;
    }
    if buffer.split_to(PROTOCOL_HEADER.len())[..] != PROTOCOL_HEADER[..] {
        bail!("not an AMQP 0-9-1 client");
    }
    let start = Method::ConnectionStart(m::ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: FieldTable::default(),
        mechanisms: Bytes::from_static(b"PLAIN"),
        locales: Bytes::from_static(b"en_US"),
    });
    sink.send(method_frame(0, &start))?;
    let mut channels: HashMap<u16, AmqpChannel> = HashMap::new();
    let mut consumer_count = 0u64;
    let mut server_named = 0u64;
    // Deliveries of this read burst, per destination connection, sent in one piece each.
    let mut batches: Vec<(Sink, BytesMut)> = Vec::new();
    loop {
        super::read_more(&mut read, &mut buffer, None).await?;
        loop {
            // Content headers are taken raw: forwarded as they are, their properties need no
            // decoding.
            if let Some((channel, raw)) = take_raw_header(&mut buffer) {
                let body_size = raw
                    .get(4..12)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                let state = channels.get_mut(&channel);
                if let Some(publishing) = state.and_then(|s| s.publishing.as_mut()) {
                    publishing.header = Some(raw);
                    publishing.body_size = body_size;
                }
                if body_size == 0 {
                    complete(routes, &mut channels, channel, &mut batches);
                }
                continue;
            }
            let Some(frame) = frame::decode_frame(&mut buffer, 0)
                .map_err(|e| anyhow!("bad frame from the client: {e}"))?
            else {
                break;
            };
            match frame {
                Frame::Method { channel, method } => match method {
                    Method::ConnectionStartOk(_) => {
                        let tune = Method::ConnectionTune(m::ConnectionTune {
                            channel_max: 2047,
                            frame_max: 131_072,
                            heartbeat: 0,
                        });
                        sink.send(method_frame(0, &tune))?;
                    }
                    Method::ConnectionTuneOk(_) => {}
                    Method::ConnectionOpen(_) => {
                        let ok = Method::ConnectionOpenOk(m::ConnectionOpenOk {
                            known_hosts: String::new(),
                        });
                        sink.send(method_frame(0, &ok))?;
                    }
                    Method::ConnectionClose(_) => {
                        flush(&mut batches);
                        sink.send(method_frame(
                            0,
                            &Method::ConnectionCloseOk(m::ConnectionCloseOk),
                        ))?;
                        return Ok(());
                    }
                    Method::ChannelOpen(_) => {
                        channels.insert(channel, AmqpChannel::default());
                        let ok = Method::ChannelOpenOk(m::ChannelOpenOk {
                            channel_id: Bytes::new(),
                        });
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::ChannelClose(_) => {
                        channels.remove(&channel);
                        sink.send(method_frame(
                            channel,
                            &Method::ChannelCloseOk(m::ChannelCloseOk),
                        ))?;
                    }
                    Method::QueueDeclare(declare) => {
                        let queue = if declare.queue.is_empty() {
                            server_named += 1;
                            format!("relay-{server_named}")
                        } else {
                            declare.queue
                        };
                        let ok = Method::QueueDeclareOk(m::QueueDeclareOk {
                            queue,
                            message_count: 0,
                            consumer_count: 0,
                        });
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::QueueBind(_) => {
                        sink.send(method_frame(channel, &Method::QueueBindOk(m::QueueBindOk)))?;
                    }
                    Method::QueuePurge(_) => {
                        let ok = Method::QueuePurgeOk(m::QueuePurgeOk { message_count: 0 });
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::QueueDelete(_) => {
                        let ok = Method::QueueDeleteOk(m::QueueDeleteOk { message_count: 0 });
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::BasicQos(_) => {
                        sink.send(method_frame(channel, &Method::BasicQosOk(m::BasicQosOk)))?;
                    }
                    Method::ConfirmSelect(_) => {
                        if let Some(state) = channels.get_mut(&channel) {
                            state.confirm = true;
                        }
                        let ok = Method::ConfirmSelectOk(m::ConfirmSelectOk);
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::BasicConsume(consume) => {
                        consumer_count += 1;
                        let tag = if consume.consumer_tag.is_empty() {
                            format!("relay-ctag-{consumer_count}")
                        } else {
                            consume.consumer_tag
                        };
                        // Registered before consume-ok: the load tool starts publishing
                        // once every consumer is confirmed.
                        routes
                            .queues
                            .lock()
                            .entry(consume.queue)
                            .or_default()
                            .consumers
                            .push(AmqpConsumer {
                                sink: sink.clone(),
                                channel,
                                tag: tag.as_str().into(),
                            });
                        let ok = Method::BasicConsumeOk(m::BasicConsumeOk { consumer_tag: tag });
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::BasicCancel(cancel) => {
                        let ok = Method::BasicCancelOk(m::BasicCancelOk {
                            consumer_tag: cancel.consumer_tag,
                        });
                        sink.send(method_frame(channel, &ok))?;
                    }
                    Method::BasicPublish(publish) => {
                        if let Some(state) = channels.get_mut(&channel) {
                            state.publishing = Some(Publishing {
                                routing_key: publish.routing_key,
                                header: None,
                                body_size: 0,
                                received: 0,
                                body: Vec::new(),
                            });
                        }
                    }
                    // Acks and anything else the load tool sends need no answer.
                    _ => {}
                },
                Frame::Header {
                    channel,
                    header,
                    raw,
                } => {
                    let state = channels.get_mut(&channel);
                    if let Some(publishing) = state.and_then(|s| s.publishing.as_mut()) {
                        publishing.header = Some(raw);
                        publishing.body_size = header.body_size;
                    }
                    if header.body_size == 0 {
                        complete(routes, &mut channels, channel, &mut batches);
                    }
                }
                Frame::Body { channel, payload } => {
                    let state = channels.get_mut(&channel);
                    let mut done = false;
                    if let Some(publishing) = state.and_then(|s| s.publishing.as_mut()) {
                        publishing.received += payload.len() as u64;
                        publishing.body.push(payload);
                        done = publishing.received >= publishing.body_size;
                    }
                    if done {
                        complete(routes, &mut channels, channel, &mut batches);
                    }
                }
                Frame::Heartbeat { .. } => {}
            }
        }
        flush(&mut batches);
        for (channel, state) in channels.iter_mut() {
            if state.confirm && state.published > state.confirmed {
                state.confirmed = state.published;
                let ack = Method::BasicAck(m::BasicAck {
                    delivery_tag: state.published,
                    multiple: true,
                });
                sink.send(method_frame(*channel, &ack))?;
            }
        }
    }
}

/// Sends each destination its deliveries of this read burst, in one piece.
fn flush(batches: &mut Vec<(Sink, BytesMut)>) {
    for (destination, batch) in batches.drain(..) {
        let _ = destination.send(batch.freeze());
    }
}

/// Forwards the message completed on `channel` to the next consumer of its queue.
fn complete(
    routes: &Routes,
    channels: &mut HashMap<u16, AmqpChannel>,
    channel: u16,
    batches: &mut Vec<(Sink, BytesMut)>,
) {
    let Some(state) = channels.get_mut(&channel) else {
        return;
    };
    state.published += 1;
    let Some(publishing) = state.publishing.take() else {
        return;
    };
    let consumer = {
        let mut queues = routes.queues.lock();
        queues.get_mut(&publishing.routing_key).and_then(|route| {
            let count = route.consumers.len();
            if count == 0 {
                return None;
            }
            route.next = (route.next + 1) % count;
            route.consumers.get(route.next).cloned()
        })
    };
    let Some(consumer) = consumer else {
        return;
    };
    let index = match batches
        .iter()
        .position(|(sink, _)| sink.same_channel(&consumer.sink))
    {
        Some(index) => index,
        None => {
            batches.push((consumer.sink.clone(), BytesMut::new()));
            batches.len() - 1
        }
    };
    let Some((_, out)) = batches.get_mut(index) else {
        return;
    };
    // The load tool does not check delivery tags; acks for them are ignored here.
    m::encode_basic_deliver_frame(
        consumer.channel,
        &consumer.tag,
        1,
        false,
        "",
        &publishing.routing_key,
        out,
    );
    if let Some(header) = &publishing.header {
        frame::encode_raw_header_frame(consumer.channel, header, out);
    }
    for chunk in &publishing.body {
        frame::encode_body_frames(consumer.channel, chunk, 131_072, out);
    }
}

/// The next frame if it is a complete content header: its channel and payload.
fn take_raw_header(buffer: &mut BytesMut) -> Option<(u16, Bytes)> {
    let head = buffer.get(..7)?;
    if head[0] != warren_amqp::constants::FRAME_HEADER {
        return None;
    }
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if buffer.get(7 + size) != Some(&warren_amqp::constants::FRAME_END) {
        return None;
    }
    let mut frame = buffer.split_to(8 + size);
    frame.advance(7);
    frame.truncate(size);
    Some((channel, frame.freeze()))
}

/// Reads an MQTT remaining-length varint at `at`: (value, bytes used), None if incomplete.
fn varint(buffer: &[u8], at: usize) -> Result<Option<(usize, usize)>> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buffer.get(at + i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    bail!("malformed remaining length")
}

fn short_packet(first: u8, packet_id: u16) -> Bytes {
    let id = packet_id.to_be_bytes();
    Bytes::copy_from_slice(&[first, 2, id[0], id[1]])
}

async fn mqtt_connection(stream: TcpStream, routes: &Routes) -> Result<()> {
    let (mut read, sink, _registration) = writer(stream, routes);
    let mut buffer = BytesMut::new();
    let mut v5 = false;
    let mut batches: Vec<(Sink, BytesMut)> = Vec::new();
    loop {
        super::read_more(&mut read, &mut buffer, None).await?;
        while let Some(&first) = buffer.first() {
            let Some((length, used)) = varint(&buffer, 1)? else {
                break;
            };
            if buffer.len() < 1 + used + length {
                break;
            }
            let packet = buffer.split_to(1 + used + length).freeze();
            let mut body = packet.slice(1 + used..);
            match first >> 4 {
                1 => {
                    // CONNECT: protocol name, then the level (5 = MQTT 5).
                    let name_len = body
                        .get(..2)
                        .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                    v5 = body.get(2 + name_len) == Some(&5);
                    let connack: &'static [u8] = if v5 {
                        &[0x20, 3, 0, 0, 0]
                    } else {
                        &[0x20, 2, 0, 0]
                    };
                    sink.send(Bytes::from_static(connack))?;
                }
                3 => {
                    let qos = (first >> 1) & 3;
                    if body.remaining() < 2 {
                        bail!("short PUBLISH");
                    }
                    let topic_len = usize::from(body.get_u16());
                    if body.remaining() < topic_len {
                        bail!("short PUBLISH topic");
                    }
                    let topic = std::str::from_utf8(&body[..topic_len])
                        .map_err(|_| anyhow!("PUBLISH topic not UTF-8"))?
                        .to_owned();
                    body.advance(topic_len);
                    if qos > 0 && body.remaining() >= 2 {
                        let packet_id = body.get_u16();
                        let reply = if qos == 1 { 0x40 } else { 0x50 };
                        sink.send(short_packet(reply, packet_id))?;
                    }
                    if let Some(subscribers) = routes.topics.lock().get(&topic) {
                        for subscriber in subscribers {
                            match batches.iter_mut().find(|(s, _)| s.same_channel(subscriber)) {
                                Some((_, out)) => out.extend_from_slice(&packet),
                                None => {
                                    batches.push((subscriber.clone(), BytesMut::from(&packet[..])))
                                }
                            }
                        }
                    }
                }
                // PUBREL from a QoS 2 publisher, PUBREC from a QoS 2 subscriber.
                6 if body.remaining() >= 2 => sink.send(short_packet(0x70, body.get_u16()))?,
                5 if body.remaining() >= 2 => sink.send(short_packet(0x62, body.get_u16()))?,
                8 => {
                    if body.remaining() < 2 {
                        bail!("short SUBSCRIBE");
                    }
                    let packet_id = body.get_u16();
                    if v5 {
                        let Some((properties, used)) = varint(&body, 0)? else {
                            bail!("short SUBSCRIBE properties");
                        };
                        if body.remaining() < properties + used {
                            bail!("short SUBSCRIBE properties");
                        }
                        body.advance(properties + used);
                    }
                    let mut granted = Vec::new();
                    while body.remaining() >= 3 {
                        let filter_len = usize::from(body.get_u16());
                        if body.remaining() < filter_len + 1 {
                            bail!("short SUBSCRIBE filter");
                        }
                        let filter = String::from_utf8_lossy(&body[..filter_len]).into_owned();
                        body.advance(filter_len);
                        granted.push(body.get_u8() & 3);
                        routes
                            .topics
                            .lock()
                            .entry(filter)
                            .or_default()
                            .push(sink.clone());
                    }
                    let mut suback = BytesMut::new();
                    suback.put_u8(0x90);
                    let length = 2 + usize::from(v5) + granted.len();
                    suback.put_u8(u8::try_from(length).map_err(|_| anyhow!("SUBACK too long"))?);
                    suback.put_u16(packet_id);
                    if v5 {
                        suback.put_u8(0);
                    }
                    suback.put_slice(&granted);
                    sink.send(suback.freeze())?;
                }
                12 => sink.send(Bytes::from_static(&[0xD0, 0]))?,
                14 => {
                    flush(&mut batches);
                    return Ok(());
                }
                // PUBACK and PUBCOMP from subscribers, anything else: no answer.
                _ => {}
            }
        }
        flush(&mut batches);
    }
}
