//! One AMQP connection: the handshake, then a loop that reads frames, handles consumer
//! events and flushes everything it produced with one write per burst.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warren_amqp::constants as c;
use warren_amqp::frame::{self, Frame};
use warren_amqp::method::{
    self as m, ConnectionBlocked, ConnectionClose, ConnectionCloseOk, ConnectionOpenOk,
    ConnectionStart, ConnectionTune, ConnectionUnblocked, Method,
};
use warren_amqp::table::{FieldTable, FieldValue};
use warren_amqp::DecodeError;

use super::channel::{Channel, ConsumerRoute};
use super::publish::PendingPublish;
use super::Settings;
use crate::core::{
    ConnectionId, ConsumerEvents, ConsumerId, Core, RouteTargets, Vhost, WindowGrants,
};

/// Read buffer growth step: one socket read can fill this much.
const READ_CHUNK: usize = 64 * 1024;
/// Consumer events handled per wake-up before flushing, so one busy queue cannot starve reads.
const EVENT_BATCH: usize = 512;

/// Why the connection must end with connection.close.
#[derive(Debug)]
pub(super) struct ConnectionException {
    pub(super) code: u16,
    pub(super) text: String,
    pub(super) class_id: u16,
    pub(super) method_id: u16,
}

impl ConnectionException {
    pub(super) fn new(code: u16, text: impl Into<String>) -> ConnectionException {
        ConnectionException {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    pub(super) fn on(mut self, method: &Method) -> ConnectionException {
        self.class_id = method.class_id();
        self.method_id = method.method_id();
        self
    }
}

/// What the client told us it understands.
#[derive(Debug, Default, Clone, Copy)]
struct ClientCapabilities {
    consumer_cancel_notify: bool,
    connection_blocked: bool,
}

/// The state of one open connection.
pub(super) struct Connection {
    pub(super) id: ConnectionId,
    peer: SocketAddr,
    stream: TcpStream,
    read_buf: BytesMut,
    /// How much the next socket read asks for.
    read_size: crate::net::ReadSize,
    /// Frames produced and not yet written.
    pub(super) out: BytesMut,
    pub(super) core: Arc<Core>,
    pub(super) vhost: Arc<Vhost>,
    pub(super) frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    pub(super) channels: crate::core::FastMap<u16, Channel>,
    /// Every consumer of every channel, by the core's id, to route deliveries.
    pub(super) consumers: crate::core::FastMap<ConsumerId, ConsumerRoute>,
    /// Where this connection's consumers receive deliveries; created by the first consumer,
    /// so connections that only publish (or idle) do not pay for it.
    pub(super) events: ConsumerEvents,
    /// Delivery window to hand back to queues once the current output is written.
    pub(super) window_grants: WindowGrants,
    /// Channels with publisher confirms to send at the end of this burst.
    pub(super) confirms_due: Vec<u16>,
    capabilities: ClientCapabilities,
    /// Whether this connection ever published (only publishers are blocked by alarms).
    pub(super) published: bool,
    blocked: bool,
    last_read: Instant,
    last_write: Instant,
    pub(super) targets: RouteTargets,
    /// Set once connection.close was exchanged; the loop ends after the next flush.
    finished: bool,
    /// How far the store has synced, for confirms of persistent messages.
    synced: Option<tokio::sync::watch::Receiver<crate::store::Ticket>>,
    /// A pause for a congested queue this connection published to.
    flow: crate::net::Flow,
}

/// Serves one accepted socket until it closes.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    core: Arc<Core>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    // The handshake runs as a boxed future and the connection state lives on the heap, so
    // the task's size while a connection idles is only the run loop's.
    let Some(mut connection) = Box::pin(open(stream, peer, core, settings, &shutdown)).await else {
        return;
    };
    let reason = connection.run(&shutdown).await;
    connection.cleanup();
    tracing::info!(peer = %connection.peer, connection = connection.id.0, reason = %reason, "connection closed");
}

/// Runs the handshake; None when the client went away or was refused.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    core: Arc<Core>,
    settings: Settings,
    shutdown: &CancellationToken,
) -> Option<Box<Connection>> {
    let _ = stream.set_nodelay(true);
    let mut wire = Wire {
        stream,
        read_buf: BytesMut::new(),
        out: BytesMut::new(),
    };
    let negotiated = tokio::select! {
        result = tokio::time::timeout(settings.handshake_timeout, handshake(&mut wire, &core, &settings)) => result,
        _ = shutdown.cancelled() => return None,
    };
    let negotiated = match negotiated {
        Ok(Ok(negotiated)) => negotiated,
        Ok(Err(HandshakeEnd::Quiet(reason))) => {
            tracing::info!(%peer, reason, "AMQP connection closed during handshake");
            return None;
        }
        Ok(Err(HandshakeEnd::Refused(exception))) => {
            tracing::warn!(%peer, code = exception.code, text = %exception.text, "AMQP handshake refused");
            wire.send_close(&exception).await;
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "AMQP handshake timed out");
            return None;
        }
    };
    // Idle connections keep no handshake buffers.
    if wire.read_buf.is_empty() {
        wire.read_buf = BytesMut::new();
    }
    wire.out = BytesMut::new();
    let now = Instant::now();
    let id = core.next_connection_id();
    tracing::info!(%peer, user = %negotiated.user, vhost = %negotiated.vhost.name, protocol = "AMQP 0-9-1", connection = id.0, "connection opened");
    Some(Box::new(Connection {
        id,
        peer,
        stream: wire.stream,
        read_buf: wire.read_buf,
        read_size: crate::net::ReadSize::new(READ_CHUNK),
        out: wire.out,
        core,
        vhost: negotiated.vhost,
        frame_max: negotiated.frame_max,
        channel_max: negotiated.channel_max,
        heartbeat: negotiated.heartbeat,
        channels: Default::default(),
        consumers: Default::default(),
        events: ConsumerEvents::default(),
        window_grants: WindowGrants::default(),
        confirms_due: Vec::new(),
        capabilities: negotiated.capabilities,
        published: false,
        blocked: false,
        last_read: now,
        last_write: now,
        targets: RouteTargets::default(),
        finished: false,
        synced: None,
        flow: None,
    }))
}

impl Connection {
    /// The main loop; returns why it ended.
    async fn run(&mut self, shutdown: &CancellationToken) -> String {
        let heartbeat = Duration::from_secs(self.heartbeat.into());
        let tick_every = if heartbeat.is_zero() {
            Duration::from_secs(3600)
        } else {
            (heartbeat / 2).max(Duration::from_millis(500))
        };
        let mut ticker = tokio::time::interval(tick_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(error) = self.flush().await {
                return format!("write failed: {error}");
            }
            if self.finished {
                // Boxed: teardown state (a scratch buffer, timers) must not size the idle task.
                Box::pin(self.linger()).await;
                return "closed by client".into();
            }
            self.update_blocked();
            let flow = crate::net::current_flow(&mut self.flow);
            let can_read = !self.blocked && flow.is_none();
            let waiting_for_sync = self.channels.values().any(|c| c.awaits_sync());
            if waiting_for_sync && self.synced.is_none() {
                self.synced = self.core.store().map(|store| store.synced());
            }
            if waiting_for_sync {
                if let Some(synced) = self.synced.as_mut() {
                    let ticket = *synced.borrow_and_update();
                    self.release_synced_confirms(ticket);
                    if !self.out.is_empty() {
                        continue;
                    }
                }
            }
            let synced = self.synced.as_mut().filter(|_| waiting_for_sync);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let exception = ConnectionException::new(
                        c::CONNECTION_FORCED,
                        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
                    );
                    Box::pin(self.close_with(exception)).await;
                    return "broker shutdown".into();
                }
                ready = self.stream.readable(), if can_read => {
                    let read = ready.and_then(|()| crate::net::read_ready(&self.stream, &mut self.read_buf, &mut self.read_size));
                    match read {
                        Ok(None) => {}
                        Ok(Some(0)) => return "client closed the socket".into(),
                        Ok(Some(_)) => {
                            self.last_read = Instant::now();
                            // readable()/try_read do not count against tokio's cooperative
                            // budget, and a consumer woken by this burst waits in this worker's
                            // LIFO slot: yield after each burst so a flooding publisher cannot
                            // starve the consumers it feeds.
                            tokio::task::yield_now().await;
                            if let Err(exception) = self.process_input() {
                                let reason = format!("{} {}", exception.code, exception.text);
                                tracing::warn!(peer = %self.peer, code = exception.code, text = %exception.text, "closing AMQP connection");
                                Box::pin(self.close_with(exception)).await;
                                return reason;
                            }
                        }
                        Err(error) => return format!("read failed: {error}"),
                    }
                }
                event = self.events.recv() => {
                    if let Some(event) = event {
                        self.handle_event(event);
                        for _ in 1..EVENT_BATCH {
                            match self.events.try_recv() {
                                Some(event) => self.handle_event(event),
                                None => break,
                            }
                        }
                    }
                }
                _ = crate::store::synced_changed(synced) => {}
                _ = ticker.tick() => {
                    if !heartbeat.is_zero() {
                        let now = Instant::now();
                        if now.duration_since(self.last_read) > heartbeat * 2 {
                            tracing::warn!(peer = %self.peer, "missed heartbeats from client, timeout: {}s", self.heartbeat);
                            return "missed heartbeats".into();
                        }
                        if now.duration_since(self.last_write) >= heartbeat / 2 && self.out.is_empty() {
                            frame::encode_heartbeat_frame(&mut self.out);
                        }
                    }
                }
                _ = crate::net::flow_wait(flow.clone()), if flow.is_some() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)), if self.blocked => {}
            }
        }
    }

    /// Pauses reading after this burst if the last publish found its queue congested.
    pub(super) fn note_congestion(&mut self) {
        let consumers = &self.consumers;
        crate::net::start_flow(&mut self.flow, &mut self.targets.congested, |queue| {
            consumers
                .values()
                .any(|route| std::ptr::eq(Arc::as_ptr(&route.queue), queue))
        });
    }

    /// Decodes and handles every complete frame in the read buffer.
    fn process_input(&mut self) -> Result<(), ConnectionException> {
        loop {
            // basic.publish (every message starts with one) is read in place: its names go
            // straight into the message's inline strings, with no `String` or `Method` built.
            // Anything unusual (closed channel, publish in progress, malformed frame) takes
            // the general path below, which reports it.
            if let Some(publish) = m::peek_basic_publish(&self.read_buf, self.frame_max) {
                let ready = self
                    .channels
                    .get_mut(&publish.channel)
                    .filter(|state| !state.closing && state.publish.is_none());
                if let Some(state) = ready {
                    state.publish = Some(PendingPublish {
                        exchange: publish.exchange.into(),
                        routing_key: publish.routing_key.into(),
                        mandatory: publish.mandatory,
                        class_method: (m::BasicPublish::CLASS_ID, m::BasicPublish::METHOD_ID),
                        header: None,
                    });
                    self.published = true;
                    let frame_len = publish.frame_len;
                    self.read_buf.advance(frame_len);
                    continue;
                }
            }
            let ids = method_ids(&self.read_buf);
            let frame = match frame::decode_frame(&mut self.read_buf, self.frame_max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    let mut exception = ConnectionException::new(
                        error.reply_code(),
                        format!("{} - {error}", c::reply_text(error.reply_code())),
                    );
                    // Name the method whose arguments failed to decode, as RabbitMQ does
                    // (framing errors name none).
                    let framing = matches!(
                        error,
                        DecodeError::BadFrameEnd(_)
                            | DecodeError::FrameTooLarge { .. }
                            | DecodeError::UnknownFrameType(_)
                    );
                    if let (Some((class_id, method_id)), false) = (ids, framing) {
                        exception.class_id = class_id;
                        exception.method_id = method_id;
                    }
                    return Err(exception);
                }
            };
            self.handle_frame(frame)?;
            if self.finished {
                break;
            }
        }
        self.send_due_confirms();
        // Release the buffer between bursts so an idle connection holds no read memory.
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Ok(())
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<(), ConnectionException> {
        match frame {
            Frame::Heartbeat { channel: 0 } => Ok(()),
            Frame::Heartbeat { .. } => Err(ConnectionException::new(
                c::UNEXPECTED_FRAME,
                "UNEXPECTED_FRAME - type 8 (heartbeat) on a non-zero channel",
            )),
            Frame::Method { channel: 0, method } => self.handle_connection_method(method),
            Frame::Method { channel, method } => self.handle_channel_method(channel, method),
            Frame::Header {
                channel,
                header,
                raw,
            } => self.handle_header(channel, header, raw),
            Frame::Body { channel, payload } => self.handle_body(channel, payload),
        }
    }

    fn handle_connection_method(&mut self, method: Method) -> Result<(), ConnectionException> {
        match method {
            Method::ConnectionClose(_) => {
                // As RabbitMQ: channels and exclusive queues are gone before close-ok.
                self.cleanup();
                self.send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk));
                self.finished = true;
                Ok(())
            }
            Method::ConnectionCloseOk(_) => {
                self.finished = true;
                Ok(())
            }
            // Credentials refresh: accepted, nothing expires here yet.
            Method::ConnectionUpdateSecret(_) => {
                self.send_method(
                    0,
                    &Method::ConnectionUpdateSecretOk(
                        warren_amqp::method::ConnectionUpdateSecretOk,
                    ),
                );
                Ok(())
            }
            other => Err(ConnectionException::new(
                c::CHANNEL_ERROR,
                format!(
                    "CHANNEL_ERROR - unexpected method in connection state running ({})",
                    other.name()
                ),
            )
            .on(&other)),
        }
    }

    /// Checks a channel number against the negotiated maximum.
    pub(super) fn check_channel_number(&self, channel: u16) -> Result<(), ConnectionException> {
        if channel > self.channel_max {
            return Err(ConnectionException::new(
                c::CHANNEL_ERROR,
                format!(
                    "CHANNEL_ERROR - channel {channel} exceeds channel_max {}",
                    self.channel_max
                ),
            ));
        }
        Ok(())
    }

    /// Whether the client wants server-sent basic.cancel.
    pub(super) fn notify_cancel(&self) -> bool {
        self.capabilities.consumer_cancel_notify
    }

    /// Appends a method frame to the output.
    pub(super) fn send_method(&mut self, channel: u16, method: &Method) {
        frame::encode_method_frame(channel, method, &mut self.out);
    }

    /// Writes all pending output, then returns delivery credit to the queues.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&self.out).await?;
        self.last_write = Instant::now();
        // Nor write memory.
        self.out = BytesMut::new();
        self.window_grants.release();
        Ok(())
    }

    fn update_blocked(&mut self) {
        if !self.published {
            return;
        }
        let over = self.core.memory().over_limit();
        if over == self.blocked {
            return;
        }
        self.blocked = over;
        if self.capabilities.connection_blocked {
            let method = if over {
                tracing::warn!(peer = %self.peer, "memory high watermark reached: blocking publisher");
                Method::ConnectionBlocked(ConnectionBlocked {
                    reason: "low on memory".into(),
                })
            } else {
                Method::ConnectionUnblocked(ConnectionUnblocked)
            };
            self.send_method(0, &method);
        }
    }

    /// Sends connection.close and waits briefly for close-ok, as the protocol asks.
    async fn close_with(&mut self, exception: ConnectionException) {
        let close = Method::ConnectionClose(ConnectionClose {
            reply_code: exception.code,
            reply_text: exception.text,
            class_id: exception.class_id,
            method_id: exception.method_id,
        });
        self.send_method(0, &close);
        if self.flush().await.is_err() {
            return;
        }
        // Everything but close-ok is discarded now; give the client a moment to answer.
        let wait = async {
            loop {
                match frame::decode_frame(&mut self.read_buf, 0) {
                    Ok(Some(Frame::Method {
                        method: Method::ConnectionCloseOk(_) | Method::ConnectionClose(_),
                        ..
                    })) => return,
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(_) => self.read_buf.clear(),
                }
                if self.read_buf.capacity() - self.read_buf.len() < 4096 {
                    self.read_buf.reserve(READ_CHUNK);
                }
                match self.stream.read_buf(&mut self.read_buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        let _ = self.stream.shutdown().await;
    }

    /// After close-ok, waits (briefly) for the client to close the socket first, as RabbitMQ
    /// does: closing our side first can reset the connection before the client reads close-ok.
    async fn linger(&mut self) {
        let drain = async {
            let mut scratch = [0u8; 4096];
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    fn cleanup(&mut self) {
        let channels: Vec<u16> = self.channels.keys().copied().collect();
        for channel in channels {
            self.release_channel(channel);
        }
        self.channels.clear();
        for delivery in self.events.close() {
            delivery.queue.requeue([delivery.seq]);
        }
        self.vhost.connection_closed(self.id);
    }
}

/// The socket and buffers during the handshake.
struct Wire {
    stream: TcpStream,
    read_buf: BytesMut,
    out: BytesMut,
}

enum HandshakeEnd {
    /// The client went away or spoke another protocol; nothing more to send.
    Quiet(&'static str),
    /// Refuse with connection.close.
    Refused(ConnectionException),
}

impl From<ConnectionException> for HandshakeEnd {
    fn from(exception: ConnectionException) -> Self {
        HandshakeEnd::Refused(exception)
    }
}

struct Negotiated {
    vhost: Arc<Vhost>,
    user: String,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    capabilities: ClientCapabilities,
}

impl Wire {
    async fn fill(&mut self) -> Result<(), HandshakeEnd> {
        if self.read_buf.capacity() - self.read_buf.len() < 512 {
            self.read_buf.reserve(crate::net::MIN_READ);
        }
        match self.stream.read_buf(&mut self.read_buf).await {
            Ok(0) | Err(_) => Err(HandshakeEnd::Quiet("client closed the socket")),
            Ok(_) => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), HandshakeEnd> {
        if self.stream.write_all(&self.out).await.is_err() {
            return Err(HandshakeEnd::Quiet("write failed"));
        }
        self.out.clear();
        Ok(())
    }

    /// Reads the next method on channel 0, skipping heartbeats.
    async fn next_method(&mut self, frame_max: u32) -> Result<Method, HandshakeEnd> {
        loop {
            match frame::decode_frame(&mut self.read_buf, frame_max) {
                Ok(Some(Frame::Method { channel: 0, method })) => return Ok(method),
                Ok(Some(Frame::Heartbeat { .. })) => continue,
                Ok(Some(_)) => {
                    return Err(ConnectionException::new(
                        c::UNEXPECTED_FRAME,
                        "UNEXPECTED_FRAME - expected a connection method during the handshake",
                    )
                    .into())
                }
                Ok(None) => self.fill().await?,
                Err(error) => {
                    return Err(ConnectionException::new(
                        error.reply_code(),
                        format!("{} - {error}", c::reply_text(error.reply_code())),
                    )
                    .into())
                }
            }
        }
    }

    async fn send_close(&mut self, exception: &ConnectionException) {
        frame::encode_method_frame(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: exception.code,
                reply_text: exception.text.clone(),
                class_id: exception.class_id,
                method_id: exception.method_id,
            }),
            &mut self.out,
        );
        if self.flush().await.is_ok() {
            // Give the client a moment to read the close before the socket goes.
            let _ = tokio::time::timeout(Duration::from_millis(500), self.fill()).await;
        }
        let _ = self.stream.shutdown().await;
    }
}

async fn handshake(
    wire: &mut Wire,
    core: &Core,
    settings: &Settings,
) -> Result<Negotiated, HandshakeEnd> {
    while wire.read_buf.len() < c::PROTOCOL_HEADER.len() {
        wire.fill().await?;
    }
    if wire.read_buf[..c::PROTOCOL_HEADER.len()] != c::PROTOCOL_HEADER {
        // AMQP §4.2.2: answer with the supported protocol header and close.
        wire.out.extend_from_slice(&c::PROTOCOL_HEADER);
        let _ = wire.flush().await;
        let _ = wire.stream.shutdown().await;
        return Err(HandshakeEnd::Quiet("unsupported protocol header"));
    }
    let _ = wire.read_buf.split_to(c::PROTOCOL_HEADER.len());

    frame::encode_method_frame(
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
        &mut wire.out,
    );
    wire.flush().await?;

    let pre_tune_frame_max = c::FRAME_MIN_SIZE.max(settings.frame_max);
    let start_ok = match wire.next_method(pre_tune_frame_max).await? {
        Method::ConnectionStartOk(start_ok) => start_ok,
        other => return Err(unexpected(&other, "connection.start-ok").into()),
    };
    let capabilities = client_capabilities(&start_ok.client_properties);
    let user = authenticate(&start_ok.mechanism, &start_ok.response)?;

    frame::encode_method_frame(
        0,
        &Method::ConnectionTune(ConnectionTune {
            channel_max: settings.channel_max,
            frame_max: settings.frame_max,
            heartbeat: settings.heartbeat_secs,
        }),
        &mut wire.out,
    );
    wire.flush().await?;

    let tune_ok = match wire.next_method(pre_tune_frame_max).await? {
        Method::ConnectionTuneOk(tune_ok) => tune_ok,
        other => return Err(unexpected(&other, "connection.tune-ok").into()),
    };
    let frame_max = negotiate(tune_ok.frame_max, settings.frame_max);
    if frame_max < c::FRAME_MIN_SIZE {
        return Err(ConnectionException::new(
            c::NOT_ALLOWED,
            format!(
                "NOT_ALLOWED - frame_max={frame_max} < {} min size",
                c::FRAME_MIN_SIZE
            ),
        )
        .into());
    }
    if tune_ok.frame_max > settings.frame_max {
        return Err(ConnectionException::new(
            c::NOT_ALLOWED,
            format!(
                "NOT_ALLOWED - frame_max={} > {} max size",
                tune_ok.frame_max, settings.frame_max
            ),
        )
        .into());
    }
    let channel_max = if tune_ok.channel_max == 0 {
        settings.channel_max
    } else {
        tune_ok.channel_max.min(settings.channel_max)
    };
    // The client's choice wins, as in RabbitMQ (0 disables heartbeats).
    let heartbeat = tune_ok.heartbeat;

    let open = match wire.next_method(frame_max).await? {
        Method::ConnectionOpen(open) => open,
        other => return Err(unexpected(&other, "connection.open").into()),
    };
    let Some(vhost) = core.vhost(&open.virtual_host) else {
        return Err(ConnectionException::new(
            c::NOT_ALLOWED,
            format!("NOT_ALLOWED - vhost {} not found", open.virtual_host),
        )
        .into());
    };
    frame::encode_method_frame(
        0,
        &Method::ConnectionOpenOk(ConnectionOpenOk {
            known_hosts: String::new(),
        }),
        &mut wire.out,
    );
    wire.flush().await?;
    Ok(Negotiated {
        vhost,
        user,
        frame_max,
        channel_max,
        heartbeat,
        capabilities,
    })
}

/// Class and method ids of the method frame at the front of `buffer`, read before decoding
/// so an argument error can name its method.
fn method_ids(buffer: &[u8]) -> Option<(u16, u16)> {
    match buffer.get(..11) {
        Some([kind, _, _, _, _, _, _, c1, c2, m1, m2]) if *kind == c::FRAME_METHOD => Some((
            u16::from_be_bytes([*c1, *c2]),
            u16::from_be_bytes([*m1, *m2]),
        )),
        _ => None,
    }
}

fn negotiate(client: u32, server: u32) -> u32 {
    if client == 0 {
        server
    } else {
        client
    }
}

fn unexpected(method: &Method, expected: &str) -> ConnectionException {
    ConnectionException::new(
        c::COMMAND_INVALID,
        format!(
            "COMMAND_INVALID - expecting {expected}, got {}",
            method.name()
        ),
    )
    .on(method)
}

/// Checks PLAIN or AMQPLAIN credentials against the user store.
fn authenticate(mechanism: &str, response: &Bytes) -> Result<String, ConnectionException> {
    let credentials = match mechanism {
        "PLAIN" => {
            // authzid \0 authcid \0 password
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(user), Some(password), None) => Some((
                    String::from_utf8_lossy(user).into_owned(),
                    password.to_vec(),
                )),
                _ => None,
            }
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut framed = BytesMut::with_capacity(response.len() + 4);
            framed.put_u32(u32::try_from(response.len()).unwrap_or(u32::MAX));
            framed.extend_from_slice(response);
            let mut framed = framed.freeze();
            FieldTable::decode(&mut framed).ok().and_then(|table| {
                match (table.get("LOGIN"), table.get("PASSWORD")) {
                    (Some(FieldValue::LongString(user)), Some(FieldValue::LongString(pass))) => {
                        Some((String::from_utf8_lossy(user).into_owned(), pass.to_vec()))
                    }
                    _ => None,
                }
            })
        }
        other => {
            return Err(ConnectionException::new(
                c::ACCESS_REFUSED,
                format!("ACCESS_REFUSED - unsupported authentication mechanism '{other}'"),
            ))
        }
    };
    match credentials {
        Some((user, password)) if crate::auth::check_password(&user, &password) => Ok(user),
        _ => Err(ConnectionException::new(
            c::ACCESS_REFUSED,
            format!("ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
        )),
    }
}

fn client_capabilities(properties: &FieldTable) -> ClientCapabilities {
    let Some(FieldValue::FieldTable(capabilities)) = properties.get("capabilities") else {
        return ClientCapabilities::default();
    };
    let flag = |name: &str| matches!(capabilities.get(name), Some(FieldValue::Boolean(true)));
    ClientCapabilities {
        consumer_cancel_notify: flag("consumer_cancel_notify"),
        connection_blocked: flag("connection.blocked"),
    }
}

fn server_properties() -> FieldTable {
    let text = |s: &'static str| FieldValue::LongString(Bytes::from_static(s.as_bytes()));
    let mut capabilities = FieldTable::new();
    for name in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "consumer_priorities",
        "direct_reply_to",
    ] {
        capabilities.insert(name, FieldValue::Boolean(true));
    }
    let mut properties = FieldTable::new();
    properties.insert("capabilities", FieldValue::FieldTable(capabilities));
    properties.insert("cluster_name", text("warren@localhost"));
    properties.insert("copyright", text("Copyright (c) the warren authors"));
    properties.insert("information", text("Licensed under the Apache License 2.0"));
    properties.insert("platform", text("Rust"));
    properties.insert("product", text("warren"));
    properties.insert("version", text(env!("CARGO_PKG_VERSION")));
    properties
}
