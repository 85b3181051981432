//! One AMQP connection: the handshake over the connection's [`Link`], then the session
//! state machine (frames in, consumer events, heartbeats, output out) that
//! [`Link::run`] drives, and the close handshake at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
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
    ConnectionId, ConsumerEvent, ConsumerEvents, ConsumerId, Core, RouteTargets, Vhost,
    WindowGrants,
};
use crate::listener::{Accepted, Ended, Link, ReadGate, Session};

/// Read buffer growth step: one socket read can fill this much.
const READ_CHUNK: usize = 64 * 1024;

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

/// The state of one open connection, apart from its socket (see [`crate::listener`]).
pub(super) struct Connection {
    pub(super) id: ConnectionId,
    peer: SocketAddr,
    /// Frames produced and not yet written.
    pub(super) out: BytesMut,
    pub(super) core: Arc<Core>,
    pub(super) vhost: Arc<Vhost>,
    /// The user's permissions in the vhost, checked on every operation as RabbitMQ does.
    pub(super) access: crate::auth::AccessCheck,
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
    /// A pause for a congested queue this connection published to.
    flow: crate::listener::Flow,
    /// The connection's metrics entry, where its channels register.
    pub(super) registration: crate::stats::Registration,
}

/// Why a session ends the connection.
pub(super) enum Closing {
    /// With connection.close carrying this reply code and text.
    Exception(ConnectionException),
    /// Without a word (missed heartbeats: the client is not listening).
    Silent(&'static str),
}

impl From<ConnectionException> for Closing {
    fn from(exception: ConnectionException) -> Self {
        Closing::Exception(exception)
    }
}

/// Serves one accepted connection until it closes.
pub(super) async fn serve(
    accepted: Accepted,
    core: Arc<Core>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let (mut link, opened) = Link::open(accepted, READ_CHUNK);
    let crate::listener::Opened {
        peer,
        certificate_name,
        registration,
    } = opened;
    // The handshake runs as a boxed future and the connection state lives on the heap, so
    // the task's size while a connection idles is only the run loop's.
    let Some(negotiated) = Box::pin(open(
        &mut link,
        peer,
        &core,
        &settings,
        certificate_name.as_deref(),
        &shutdown,
        &registration,
    ))
    .await
    else {
        return;
    };
    let transport = link.stream.transport();
    let user = negotiated.user.clone();
    let connection_name = negotiated.connection_name.clone();
    let mut connection = Box::new(Connection::new(
        core,
        peer,
        negotiated,
        registration,
        Instant::now(),
    ));
    connection
        .registration
        .stats()
        .set_identity(crate::stats::ConnectionIdentity {
            user: user.clone(),
            vhost: connection.vhost.name.clone(),
            connection: connection.id.0,
            client: connection_name.unwrap_or_default(),
        });
    tracing::info!(%peer, user = %user, vhost = %connection.vhost.name, protocol = "AMQP 0-9-1", transport, connection = connection.id.0, "connection opened");
    let kick = connection.registration.stats().kick.clone();
    let stop = crate::listener::ShutdownOrKick(&shutdown, &kick);
    let reason = match link.run(&mut *connection, &stop).await {
        Ended::Finished => {
            // Boxed: teardown state (timers) must not size the idle task.
            Box::pin(linger(&mut link)).await;
            "closed by client".to_string()
        }
        Ended::Closed(Closing::Exception(exception)) => {
            let reason = format!("{} {}", exception.code, exception.text);
            tracing::warn!(%peer, code = exception.code, text = %exception.text, "closing AMQP connection");
            Box::pin(close_with(&mut link, &mut connection, exception)).await;
            reason
        }
        Ended::Closed(Closing::Silent(reason)) => reason.to_string(),
        Ended::Lost(reason) => reason,
        Ended::Stopped if !shutdown.is_cancelled() => {
            let reason = kick.reason().unwrap_or_default();
            let exception = ConnectionException::new(
                c::CONNECTION_FORCED,
                format!("CONNECTION_FORCED - {reason}"),
            );
            Box::pin(close_with(&mut link, &mut connection, exception)).await;
            reason
        }
        Ended::Stopped => {
            let exception = ConnectionException::new(
                c::CONNECTION_FORCED,
                "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
            );
            Box::pin(close_with(&mut link, &mut connection, exception)).await;
            "broker shutdown".to_string()
        }
    };
    connection.cleanup();
    tracing::info!(%peer, connection = connection.id.0, reason = %reason, "connection closed");
}

/// Runs the handshake; None when the client went away or was refused.
async fn open(
    link: &mut Link,
    peer: SocketAddr,
    core: &Core,
    settings: &Settings,
    certificate_name: Option<&str>,
    shutdown: &CancellationToken,
    registration: &crate::stats::Registration,
) -> Option<Negotiated> {
    let registry = registration.registry();
    let protocol = crate::stats::Protocol::Amqp091;
    let mut wire = Wire {
        link,
        out: BytesMut::new(),
    };
    let negotiated = tokio::select! {
        result = tokio::time::timeout(settings.handshake_timeout, handshake(&mut wire, core, settings, certificate_name, peer)) => result,
        _ = shutdown.cancelled() => return None,
    };
    match negotiated {
        Ok(Ok(negotiated)) => {
            registry.auth_attempt(protocol, true);
            Some(negotiated)
        }
        Ok(Err(HandshakeEnd::Quiet(reason))) => {
            tracing::info!(%peer, reason, "AMQP connection closed during handshake");
            None
        }
        Ok(Err(HandshakeEnd::Refused(exception))) => {
            if exception.code == c::ACCESS_REFUSED {
                registry.auth_attempt(protocol, false);
            }
            tracing::warn!(%peer, code = exception.code, text = %exception.text, "AMQP handshake refused");
            wire.send_close(&exception).await;
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "AMQP handshake timed out");
            None
        }
    }
}

impl Connection {
    /// The session of a connection whose handshake negotiated `negotiated`, at `now`.
    fn new(
        core: Arc<Core>,
        peer: SocketAddr,
        negotiated: Negotiated,
        registration: crate::stats::Registration,
        now: Instant,
    ) -> Connection {
        let access = crate::auth::AccessCheck::new(
            core.users().clone(),
            &negotiated.user,
            &negotiated.vhost.name,
            "",
        );
        Connection {
            id: core.next_connection_id(),
            peer,
            out: BytesMut::new(),
            core,
            vhost: negotiated.vhost,
            access,
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
            flow: None,
            registration,
        }
    }

    /// Pauses reading after this burst if the last publish found its queue congested.
    pub(super) fn note_congestion(&mut self) {
        let consumers = &self.consumers;
        let paused =
            crate::listener::start_flow(&mut self.flow, &mut self.targets.congested, |queue| {
                consumers
                    .values()
                    .any(|route| std::ptr::eq(Arc::as_ptr(&route.queue), queue))
            });
        if paused {
            self.registration
                .registry()
                .flow_paused(crate::stats::Protocol::Amqp091);
        }
    }

    /// Decodes and handles every complete frame in the read buffer.
    fn process_input(&mut self, input: &mut BytesMut) -> Result<(), ConnectionException> {
        loop {
            // basic.publish (every message starts with one) is read in place: its names go
            // straight into the message's inline strings, with no `String` or `Method` built.
            // Anything unusual (closed channel, publish in progress, malformed frame) takes
            // the general path below, which reports it.
            if let Some(publish) = m::peek_basic_publish(input, self.frame_max) {
                // immediate=true takes the general path, which refuses it.
                let ready = self
                    .channels
                    .get_mut(&publish.channel)
                    .filter(|state| !state.closing && state.publish.is_none())
                    .filter(|_| !publish.immediate);
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
                    input.advance(frame_len);
                    continue;
                }
            }
            let ids = method_ids(input);
            let frame = match frame::decode_frame(input, self.frame_max) {
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

    fn update_blocked(&mut self) {
        if !self.published {
            return;
        }
        let alarm = self.core.resource_alarm();
        if alarm.is_some() == self.blocked {
            return;
        }
        self.blocked = alarm.is_some();
        if let Some(reason) = alarm {
            tracing::warn!(peer = %self.peer, reason, "resource alarm: blocking publisher");
        }
        if self.capabilities.connection_blocked {
            let method = match alarm {
                Some(reason) => Method::ConnectionBlocked(ConnectionBlocked {
                    reason: reason.into(),
                }),
                None => Method::ConnectionUnblocked(ConnectionUnblocked),
            };
            self.send_method(0, &method);
        }
    }

    fn cleanup(&mut self) {
        let channels: Vec<u16> = self.channels.keys().copied().collect();
        for channel in channels {
            self.release_channel(channel);
            self.forget_channel(channel);
        }
        for delivery in self.events.close() {
            delivery.queue.requeue([delivery.seq]);
        }
        self.vhost.connection_closed(self.id);
    }
}

impl Session for Connection {
    type Close = Closing;

    fn handle_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), Closing> {
        self.last_read = now;
        self.process_input(input).map_err(Closing::Exception)
    }

    fn events(&mut self) -> Option<&mut ConsumerEvents> {
        Some(&mut self.events)
    }

    fn handle_event(&mut self, event: ConsumerEvent) {
        Connection::handle_event(self, event);
    }

    fn deadline(&self) -> Option<Instant> {
        let heartbeat = self.heartbeat_interval()?;
        Some((self.last_read + heartbeat * 2).min(self.last_write + heartbeat / 2))
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Closing> {
        let Some(heartbeat) = self.heartbeat_interval() else {
            return Ok(());
        };
        // RabbitMQ's rule: a peer silent for two heartbeat intervals is gone.
        if now.duration_since(self.last_read) >= heartbeat * 2 {
            tracing::warn!(peer = %self.peer, "missed heartbeats from client, timeout: {}s", self.heartbeat);
            return Err(Closing::Silent("missed heartbeats"));
        }
        if now.duration_since(self.last_write) >= heartbeat / 2 && self.out.is_empty() {
            frame::encode_heartbeat_frame(&mut self.out);
        }
        Ok(())
    }

    fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    fn written(&mut self, now: Instant) {
        self.last_write = now;
    }

    fn release_window(&mut self) {
        self.window_grants.release();
    }

    fn read_gate(&mut self) -> ReadGate {
        self.update_blocked();
        if self.blocked {
            return ReadGate::Blocked;
        }
        match crate::listener::current_flow(&mut self.flow) {
            Some(flow) => ReadGate::Paused(flow),
            None => ReadGate::Open,
        }
    }

    fn awaits_sync(&self) -> bool {
        self.channels.values().any(|channel| channel.awaits_sync())
    }

    fn release_synced(&mut self, ticket: crate::store::Ticket) {
        self.release_synced_confirms(ticket);
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn store(&self) -> Option<Arc<crate::store::Store>> {
        self.core.store().cloned()
    }
}

impl Connection {
    /// The negotiated heartbeat interval; None when heartbeats are off.
    fn heartbeat_interval(&self) -> Option<Duration> {
        (self.heartbeat > 0).then(|| Duration::from_secs(self.heartbeat.into()))
    }
}

/// Sends connection.close and waits briefly for close-ok, as the protocol asks.
async fn close_with(link: &mut Link, connection: &mut Connection, exception: ConnectionException) {
    let close = Method::ConnectionClose(ConnectionClose {
        reply_code: exception.code,
        reply_text: exception.text,
        class_id: exception.class_id,
        method_id: exception.method_id,
    });
    connection.send_method(0, &close);
    if link.write(&mut connection.out).await.is_err() {
        return;
    }
    connection.window_grants.release();
    // Everything but close-ok is discarded now; give the client a moment to answer.
    let wait = async {
        loop {
            match frame::decode_frame(&mut link.read_buf, 0) {
                Ok(Some(Frame::Method {
                    method: Method::ConnectionCloseOk(_) | Method::ConnectionClose(_),
                    ..
                })) => return,
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => link.read_buf.clear(),
            }
            match link.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    link.stream.shutdown().await;
}

/// After close-ok, waits (briefly) for the client to close the socket first, as RabbitMQ
/// does: closing our side first can reset the connection before the client reads close-ok.
async fn linger(link: &mut Link) {
    let drain = async {
        loop {
            link.read_buf.clear();
            match link.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

/// The socket and buffers during the handshake.
struct Wire<'a> {
    link: &'a mut Link,
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
    connection_name: Option<String>,
}

impl Wire<'_> {
    async fn fill(&mut self) -> Result<(), HandshakeEnd> {
        match self.link.fill().await {
            Ok(0) | Err(_) => Err(HandshakeEnd::Quiet("client closed the socket")),
            Ok(_) => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), HandshakeEnd> {
        if self.link.write(&mut self.out).await.is_err() {
            return Err(HandshakeEnd::Quiet("write failed"));
        }
        Ok(())
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
        self.link.stream.shutdown().await;
    }
}

/// Runs the handshake state machine over the wire: feed it input, write what it produced.
async fn handshake(
    wire: &mut Wire<'_>,
    core: &Core,
    settings: &Settings,
    certificate_name: Option<&str>,
    peer: SocketAddr,
) -> Result<Negotiated, HandshakeEnd> {
    let mut machine = Handshake::new(settings, certificate_name, peer);
    loop {
        let progress = machine.advance(&mut wire.link.read_buf, core, &mut wire.out);
        // What the machine produced goes out before anything else happens, refusals and
        // the protocol header for a wrong one included.
        let flushed = wire.flush().await;
        match progress {
            Ok(Some(negotiated)) => {
                flushed?;
                return Ok(negotiated);
            }
            Ok(None) => {
                flushed?;
                wire.fill().await?;
            }
            Err(HandshakeEnd::Quiet(reason)) => {
                wire.link.stream.shutdown().await;
                return Err(HandshakeEnd::Quiet(reason));
            }
            Err(refused) => return Err(refused),
        }
    }
}

/// Where the handshake stands: what the server waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandshakeStep {
    Header,
    StartOk,
    TuneOk,
    Open,
}

/// The AMQP handshake (protocol header, start/start-ok, tune/tune-ok, open/open-ok) as a
/// state machine over input bytes: no socket, so it is tested by feeding it bytes.
struct Handshake<'a> {
    settings: &'a Settings,
    certificate_name: Option<&'a str>,
    /// The client's address (loopback-only users).
    peer: SocketAddr,
    step: HandshakeStep,
    user: String,
    capabilities: ClientCapabilities,
    /// `connection_name` from the client's properties, as RabbitMQ's UI shows it.
    connection_name: Option<String>,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
}

impl<'a> Handshake<'a> {
    fn new(
        settings: &'a Settings,
        certificate_name: Option<&'a str>,
        peer: SocketAddr,
    ) -> Handshake<'a> {
        Handshake {
            settings,
            certificate_name,
            peer,
            step: HandshakeStep::Header,
            user: String::new(),
            capabilities: ClientCapabilities::default(),
            connection_name: None,
            frame_max: settings.frame_max,
            channel_max: settings.channel_max,
            heartbeat: 0,
        }
    }

    /// Consumes what it can of `input`, writing replies into `out`: `Ok(None)` wants more
    /// input, `Ok(Some(..))` is an open connection (input after open stays in `input`).
    fn advance(
        &mut self,
        input: &mut BytesMut,
        core: &Core,
        out: &mut BytesMut,
    ) -> Result<Option<Negotiated>, HandshakeEnd> {
        let settings = self.settings;
        let pre_tune_frame_max = c::FRAME_MIN_SIZE.max(settings.frame_max);
        loop {
            match self.step {
                HandshakeStep::Header => {
                    if input.len() < c::PROTOCOL_HEADER.len() {
                        return Ok(None);
                    }
                    if input[..c::PROTOCOL_HEADER.len()] != c::PROTOCOL_HEADER {
                        // AMQP §4.2.2: answer with the supported protocol header and close.
                        out.extend_from_slice(&c::PROTOCOL_HEADER);
                        return Err(HandshakeEnd::Quiet("unsupported protocol header"));
                    }
                    input.advance(c::PROTOCOL_HEADER.len());
                    frame::encode_method_frame(
                        0,
                        &Method::ConnectionStart(ConnectionStart {
                            version_major: 0,
                            version_minor: 9,
                            server_properties: server_properties(),
                            // EXTERNAL (certificate login) only where TLS verified a client
                            // certificate, as RabbitMQ's rabbitmq_auth_mechanism_ssl offers it.
                            mechanisms: if self.certificate_name.is_some() {
                                Bytes::from_static(b"PLAIN AMQPLAIN EXTERNAL")
                            } else {
                                Bytes::from_static(b"PLAIN AMQPLAIN")
                            },
                            locales: Bytes::from_static(b"en_US"),
                        }),
                        out,
                    );
                    self.step = HandshakeStep::StartOk;
                }
                HandshakeStep::StartOk => {
                    let Some(method) = next_handshake_method(input, pre_tune_frame_max)? else {
                        return Ok(None);
                    };
                    let Method::ConnectionStartOk(start_ok) = method else {
                        return Err(unexpected(&method, "connection.start-ok").into());
                    };
                    self.capabilities = client_capabilities(&start_ok.client_properties);
                    self.connection_name = match start_ok.client_properties.get("connection_name") {
                        Some(FieldValue::LongString(name)) => {
                            Some(String::from_utf8_lossy(name).into_owned())
                        }
                        _ => None,
                    };
                    self.user = authenticate(
                        &start_ok.mechanism,
                        &start_ok.response,
                        self.certificate_name,
                        core.users(),
                        self.peer,
                    )?;
                    frame::encode_method_frame(
                        0,
                        &Method::ConnectionTune(ConnectionTune {
                            channel_max: settings.channel_max,
                            frame_max: settings.frame_max,
                            heartbeat: settings.heartbeat_secs,
                        }),
                        out,
                    );
                    self.step = HandshakeStep::TuneOk;
                }
                HandshakeStep::TuneOk => {
                    let Some(method) = next_handshake_method(input, pre_tune_frame_max)? else {
                        return Ok(None);
                    };
                    let Method::ConnectionTuneOk(tune_ok) = method else {
                        return Err(unexpected(&method, "connection.tune-ok").into());
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
                    self.frame_max = frame_max;
                    self.channel_max = if tune_ok.channel_max == 0 {
                        settings.channel_max
                    } else {
                        tune_ok.channel_max.min(settings.channel_max)
                    };
                    // The client's choice wins, as in RabbitMQ (0 disables heartbeats).
                    self.heartbeat = tune_ok.heartbeat;
                    self.step = HandshakeStep::Open;
                }
                HandshakeStep::Open => {
                    let Some(method) = next_handshake_method(input, self.frame_max)? else {
                        return Ok(None);
                    };
                    let Method::ConnectionOpen(open) = method else {
                        return Err(unexpected(&method, "connection.open").into());
                    };
                    let Some(vhost) = core.vhost(&open.virtual_host) else {
                        return Err(ConnectionException::new(
                            c::NOT_ALLOWED,
                            format!("NOT_ALLOWED - vhost {} not found", open.virtual_host),
                        )
                        .into());
                    };
                    if core.users().grant(&self.user, &vhost.name).is_none() {
                        return Err(ConnectionException::new(
                            c::NOT_ALLOWED,
                            format!(
                                "NOT_ALLOWED - access to vhost '{}' refused for user '{}'",
                                vhost.name, self.user
                            ),
                        )
                        .into());
                    }
                    frame::encode_method_frame(
                        0,
                        &Method::ConnectionOpenOk(ConnectionOpenOk {
                            known_hosts: String::new(),
                        }),
                        out,
                    );
                    return Ok(Some(Negotiated {
                        vhost,
                        user: std::mem::take(&mut self.user),
                        frame_max: self.frame_max,
                        channel_max: self.channel_max,
                        heartbeat: self.heartbeat,
                        capabilities: self.capabilities,
                        connection_name: self.connection_name.take(),
                    }));
                }
            }
        }
    }
}

/// The next method on channel 0 in `input` (heartbeats skipped); None when incomplete.
fn next_handshake_method(
    input: &mut BytesMut,
    frame_max: u32,
) -> Result<Option<Method>, HandshakeEnd> {
    loop {
        match frame::decode_frame(input, frame_max) {
            Ok(Some(Frame::Method { channel: 0, method })) => return Ok(Some(method)),
            Ok(Some(Frame::Heartbeat { .. })) => continue,
            Ok(Some(_)) => {
                return Err(ConnectionException::new(
                    c::UNEXPECTED_FRAME,
                    "UNEXPECTED_FRAME - expected a connection method during the handshake",
                )
                .into())
            }
            Ok(None) => return Ok(None),
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

/// Checks PLAIN or AMQPLAIN credentials against the user store, or logs in with the
/// verified client certificate's CN (EXTERNAL).
fn authenticate(
    mechanism: &str,
    response: &Bytes,
    certificate_name: Option<&str>,
    users: &crate::auth::Users,
    peer: SocketAddr,
) -> Result<String, ConnectionException> {
    let refused = || {
        ConnectionException::new(
            c::ACCESS_REFUSED,
            format!("ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
        )
    };
    let credentials = match mechanism {
        "EXTERNAL" => {
            // The certificate is the credential; a CN that names no user is refused like
            // a bad password.
            return match certificate_name {
                Some(name) => match users.login_without_password(name, peer) {
                    Ok(()) => Ok(name.to_string()),
                    Err(error) => {
                        tracing::warn!(%peer, %error, "EXTERNAL login refused");
                        Err(refused())
                    }
                },
                None => Err(ConnectionException::new(
                    c::ACCESS_REFUSED,
                    "ACCESS_REFUSED - EXTERNAL needs a verified client certificate",
                )),
            };
        }
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
        Some((user, password)) => match users.login(&user, &password, peer) {
            Ok(()) => Ok(user),
            Err(error) => {
                tracing::warn!(%peer, %error, "AMQP login refused");
                Err(refused())
            }
        },
        None => Err(refused()),
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

/// The session's timers, driven with an explicit clock: no socket, no waiting.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn local_peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    const HEARTBEAT_FRAME: [u8; 8] = [c::FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, c::FRAME_END];

    fn session(heartbeat: u16, now: Instant) -> Connection {
        let core = Core::new(1 << 30, None);
        let vhost = core.vhost("/").expect("default vhost");
        let negotiated = Negotiated {
            vhost,
            user: "guest".into(),
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat,
            capabilities: ClientCapabilities::default(),
            connection_name: None,
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let registration = crate::stats::Registry::new().open_connection(
            crate::stats::Protocol::Amqp091,
            "tcp",
            peer,
            None,
        );
        Connection::new(core, peer, negotiated, registration, now)
    }

    #[test]
    fn heartbeats_are_sent_at_half_the_interval_when_nothing_else_was() {
        let start = Instant::now();
        let mut connection = session(10, start);
        assert_eq!(connection.deadline(), Some(start + Duration::from_secs(5)));
        // Too early: nothing.
        connection
            .handle_timeout(start + Duration::from_secs(4))
            .map_err(|_| "closed")
            .unwrap();
        assert!(connection.out.is_empty());
        connection
            .handle_timeout(start + Duration::from_secs(5))
            .map_err(|_| "closed")
            .unwrap();
        assert_eq!(&connection.out[..], &HEARTBEAT_FRAME);
        connection.out.clear();
        connection.written(start + Duration::from_secs(5));
        assert_eq!(connection.deadline(), Some(start + Duration::from_secs(10)));
    }

    #[test]
    fn a_client_silent_for_two_heartbeat_intervals_is_dropped() {
        let start = Instant::now();
        let mut connection = session(10, start);
        // A heartbeat from the client at 12 s moves the silence window.
        let mut input = BytesMut::from(&HEARTBEAT_FRAME[..]);
        connection
            .handle_input(&mut input, start + Duration::from_secs(12))
            .map_err(|_| "closed")
            .unwrap();
        assert!(input.is_empty(), "the heartbeat frame was consumed");
        for at in [19, 25, 31] {
            connection.written(start + Duration::from_secs(at));
            assert!(
                connection
                    .handle_timeout(start + Duration::from_secs(at))
                    .is_ok(),
                "dropped at {at} s after 12 s of silence"
            );
        }
        match connection.handle_timeout(start + Duration::from_secs(32)) {
            Err(Closing::Silent(reason)) => assert_eq!(reason, "missed heartbeats"),
            _ => panic!("a client silent for 20 s (heartbeat 10 s) is kept"),
        }
    }

    fn settings() -> Settings {
        Settings {
            heartbeat_secs: 60,
            frame_max: 131_072,
            channel_max: 2047,
            handshake_timeout: Duration::from_secs(10),
        }
    }

    fn method_bytes(method: Method) -> BytesMut {
        let mut bytes = BytesMut::new();
        frame::encode_method_frame(0, &method, &mut bytes);
        bytes
    }

    fn start_ok(mechanism: &str, response: &'static [u8]) -> BytesMut {
        method_bytes(Method::ConnectionStartOk(m::ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: mechanism.into(),
            response: Bytes::from_static(response),
            locale: "en_US".into(),
        }))
    }

    fn sent(out: &mut BytesMut) -> Vec<Method> {
        let mut methods = Vec::new();
        while let Ok(Some(Frame::Method { method, .. })) = frame::decode_frame(out, 1 << 20) {
            methods.push(method);
        }
        assert!(out.is_empty(), "only whole method frames were sent");
        methods
    }

    /// The handshake without a socket: header, start-ok, tune-ok and open (with a publish
    /// pipelined behind it) give an open connection with what was negotiated.
    #[test]
    fn handshake_negotiates_without_a_socket() {
        let core = Core::new(1 << 30, None);
        let settings = settings();
        let mut handshake = Handshake::new(&settings, None, local_peer());
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&c::PROTOCOL_HEADER[..4]);
        assert!(matches!(
            handshake.advance(&mut input, &core, &mut out),
            Ok(None)
        ));
        assert!(out.is_empty(), "nothing before the whole header");
        input.extend_from_slice(&c::PROTOCOL_HEADER[4..]);
        assert!(matches!(
            handshake.advance(&mut input, &core, &mut out),
            Ok(None)
        ));
        match &sent(&mut out)[..] {
            [Method::ConnectionStart(start)] => {
                assert_eq!(&start.mechanisms[..], b"PLAIN AMQPLAIN")
            }
            other => panic!("expected connection.start, got {other:?}"),
        }
        input.extend_from_slice(&start_ok("PLAIN", b"\0guest\0guest"));
        assert!(matches!(
            handshake.advance(&mut input, &core, &mut out),
            Ok(None)
        ));
        assert!(matches!(&sent(&mut out)[..], [Method::ConnectionTune(_)]));
        input.extend_from_slice(&method_bytes(Method::ConnectionTuneOk(
            m::ConnectionTuneOk {
                channel_max: 10,
                frame_max: 8192,
                heartbeat: 7,
            },
        )));
        input.extend_from_slice(&method_bytes(Method::ConnectionOpen(m::ConnectionOpen {
            virtual_host: "/".into(),
            capabilities: String::new(),
            insist: false,
        })));
        input.extend_from_slice(&HEARTBEAT_FRAME);
        let negotiated = match handshake.advance(&mut input, &core, &mut out) {
            Ok(Some(negotiated)) => negotiated,
            _ => panic!("the handshake did not complete"),
        };
        assert!(matches!(&sent(&mut out)[..], [Method::ConnectionOpenOk(_)]));
        assert_eq!(negotiated.user, "guest");
        assert_eq!(
            (
                negotiated.frame_max,
                negotiated.channel_max,
                negotiated.heartbeat
            ),
            (8192, 10, 7)
        );
        assert_eq!(
            &input[..],
            &HEARTBEAT_FRAME,
            "input after open is left for the session"
        );
    }

    #[test]
    fn handshake_refusals() {
        let core = Core::new(1 << 30, None);
        let settings = settings();
        // Another protocol: AMQP's header goes back (AMQP 0-9-1 §4.2.2).
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let outcome =
            Handshake::new(&settings, None, local_peer()).advance(&mut input, &core, &mut out);
        assert!(matches!(outcome, Err(HandshakeEnd::Quiet(_))));
        assert_eq!(&out[..], &c::PROTOCOL_HEADER);
        // A wrong password: 403.
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&c::PROTOCOL_HEADER[..]);
        input.extend_from_slice(&start_ok("PLAIN", b"\0guest\0wrong"));
        match Handshake::new(&settings, None, local_peer()).advance(&mut input, &core, &mut out) {
            Err(HandshakeEnd::Refused(exception)) => assert_eq!(exception.code, c::ACCESS_REFUSED),
            _ => panic!("a wrong password was accepted"),
        }
        // EXTERNAL is offered with a verified certificate and logs in as its CN.
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&c::PROTOCOL_HEADER[..]);
        input.extend_from_slice(&start_ok("EXTERNAL", b""));
        let mut handshake = Handshake::new(&settings, Some("guest"), local_peer());
        assert!(matches!(
            handshake.advance(&mut input, &core, &mut out),
            Ok(None)
        ));
        match &sent(&mut out)[..] {
            [Method::ConnectionStart(start), Method::ConnectionTune(_)] => {
                assert_eq!(&start.mechanisms[..], b"PLAIN AMQPLAIN EXTERNAL")
            }
            other => panic!("expected start and tune, got {other:?}"),
        }
        assert_eq!(handshake.user, "guest");
    }

    #[test]
    fn heartbeat_zero_means_no_timer() {
        let start = Instant::now();
        let mut connection = session(0, start);
        assert_eq!(connection.deadline(), None);
        assert!(connection
            .handle_timeout(start + Duration::from_secs(86_400))
            .is_ok());
        assert!(connection.out.is_empty());
    }
}
