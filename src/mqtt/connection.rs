//! One MQTT connection: CONNECT, then a loop over client packets, core deliveries,
//! keepalive and take-over, flushing all output once per burst.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use warren_mqtt::reason as rc;
use warren_mqtt::{
    Codec, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, Packet, ProtocolVersion,
    PubRel, Will,
};

use super::inbound::publish_will;
use super::session::{Kick, SessionState, Subscription};
use super::Shared;
use crate::core::{
    ConnectionId, ConsumerEvent, ConsumerEvents, ConsumerId, EventSink, Queue, RouteTargets, Vhost,
    WindowGrants,
};
use crate::store::Ticket;

const READ_CHUNK: usize = 16 * 1024;
const EVENT_BATCH: usize = 512;

/// Why the connection ends, and what the client is told (v5 DISCONNECT reason).
pub(super) struct Closing {
    reason: u8,
    log: String,
}

impl Closing {
    pub(super) fn new(reason: u8, log: impl Into<String>) -> Closing {
        Closing {
            reason,
            log: log.into(),
        }
    }
}

/// A delivery sent with QoS 1 or 2 and not yet acknowledged by the client.
pub(super) struct Outbound {
    /// The queue and position to ack in the core (None for retained messages).
    pub(super) source: Option<(Arc<Queue>, u64)>,
}

/// What a consuming connection keeps about its deliveries.
#[derive(Default)]
pub(super) struct Delivering {
    pub(super) consumers: HashMap<ConsumerId, ConsumerSource>,
    pub(super) events: ConsumerEvents,
    pub(super) outbound: HashMap<u16, Outbound>,
    /// Delivery window to hand back to queues once the current output is written.
    pub(super) window_grants: WindowGrants,
}

/// The delivery state, allocated on first use.
pub(super) fn active(delivering: &mut Option<Box<Delivering>>) -> &mut Delivering {
    delivering.get_or_insert_with(Box::default)
}

/// Acknowledgements of persisted publishes, held until the store has them on disk.
#[derive(Default)]
pub(super) struct SyncWait {
    /// (ticket, acknowledgement) in arrival order.
    pub(super) acks: std::collections::VecDeque<(Ticket, Packet)>,
    /// How far the store has synced.
    pub(super) synced: Option<tokio::sync::watch::Receiver<Ticket>>,
    /// PUBACKs among `acks`: QoS 1 publishes still counting against the Receive Maximum.
    pub(super) held_pubacks: usize,
}

/// What a publishing connection keeps between publishes.
#[derive(Default)]
pub(super) struct Publishing {
    /// Routing scratch space.
    pub(super) targets: RouteTargets,
    /// A pause for a congested queue this connection published to.
    pub(super) flow: crate::net::Flow,
    /// PUBACKs sent while processing the current burst of input (see `start_input_burst`).
    pub(super) pubacks_this_burst: usize,
}

/// Topic aliases (MQTT 5) of one connection.
#[derive(Default)]
pub(super) struct Aliases {
    /// Set by the client: alias → topic.
    pub(super) inbound: HashMap<u16, String>,
    /// Chosen by the broker: topic → alias.
    pub(super) outbound: HashMap<String, u16>,
}

/// Where a consumer of this connection reads from.
pub(super) struct ConsumerSource {
    pub(super) queue: Arc<Queue>,
    /// The full `$share/…` filter for shared subscriptions; None for the session queue.
    pub(super) shared: Option<String>,
}

pub(super) struct MqttConnection {
    pub(super) shared: Arc<Shared>,
    pub(super) id: ConnectionId,
    stream: TcpStream,
    read_buf: BytesMut,
    /// How much the next socket read asks for.
    read_size: crate::net::ReadSize,
    pub(super) out: BytesMut,
    pub(super) codec: Codec,
    version: ProtocolVersion,
    pub(super) vhost: Arc<Vhost>,
    pub(super) client_id: String,
    /// The client's keepalive in seconds (0 = none); 2 bytes, as every idle client pays it.
    keep_alive: u16,
    last_read: Instant,
    pub(super) session: SessionState,
    pub(super) persistent: bool,
    generation: u64,
    kick: Kick,
    /// Boxed: most of the struct's size otherwise, and absent for many clients.
    will: Option<Box<Will>>,
    /// Consumers, deliveries in flight and their channel; allocated once the connection
    /// first consumes, so a connection that only publishes or idles does not pay for them.
    pub(super) delivering: Option<Box<Delivering>>,
    pub(super) next_packet_id: u16,
    /// Client's Receive Maximum: QoS 1/2 deliveries in flight towards it.
    pub(super) client_receive_maximum: u16,
    /// QoS 1/2 publishes from the client not yet completed (PUBACK/PUBCOMP not sent).
    pub(super) inbound_inflight: usize,
    /// Topic aliases in both directions, allocated on first use.
    pub(super) aliases: Option<Box<Aliases>>,
    pub(super) client_topic_alias_maximum: u16,
    /// Routing scratch space and flow state, allocated on the first publish.
    pub(super) publishing: Option<Box<Publishing>>,
    /// Acknowledgements waiting for the store's fsync; allocated on first use.
    pub(super) sync_wait: Option<Box<SyncWait>>,
    /// A DISCONNECT arrived: the loop ends after flushing.
    finished: bool,
    /// Whether the will is to be published when the connection ends.
    send_will: bool,
}

/// Serves one accepted socket until it closes.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    // The handshake and the teardown run as boxed futures, so the task's size while a
    // connection idles is only the run loop's.
    let Some(mut connection) = Box::pin(open(stream, peer, shared)).await else {
        return;
    };
    let closing = connection.run().await;
    Box::pin(connection.finish(closing)).await;
}

/// Reads and answers CONNECT; None when the connection was refused or went away.
async fn open(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Option<Box<MqttConnection>> {
    let _ = stream.set_nodelay(true);
    let mut read_buf = BytesMut::new();
    let mut codec = Codec::new(shared.settings.max_packet_size as usize);
    let timeout = shared.settings.connect_timeout;
    let first = tokio::select! {
        first = tokio::time::timeout(timeout, read_connect(&mut stream, &mut read_buf, &mut codec)) => first,
        _ = shared.shutdown.cancelled() => return None,
    };
    let connect = match first {
        Ok(Ok(connect)) => connect,
        Ok(Err(ConnectFailure::Quiet(reason))) => {
            tracing::info!(%peer, reason, "MQTT connection closed before CONNECT");
            return None;
        }
        Ok(Err(ConnectFailure::Refuse(version, reason, log))) => {
            tracing::warn!(%peer, reason = log, "MQTT CONNECT refused");
            refuse(&mut stream, version, reason).await;
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "MQTT client sent no CONNECT in time");
            return None;
        }
    };
    if read_buf.is_empty() {
        // The CONNECT's buffer is not kept for an idle connection.
        read_buf = BytesMut::new();
    }
    accept_connect(stream, peer, read_buf, codec, connect, shared).await
}

enum ConnectFailure {
    Quiet(&'static str),
    Refuse(ProtocolVersion, u8, String),
}

async fn read_connect(
    stream: &mut TcpStream,
    read_buf: &mut BytesMut,
    codec: &mut Codec,
) -> Result<Connect, ConnectFailure> {
    loop {
        match codec.decode(read_buf) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(_)) => return Err(ConnectFailure::Quiet("first packet was not CONNECT")),
            Ok(None) => {}
            Err(DecodeError::UnsupportedProtocolVersion(level)) => {
                return Err(ConnectFailure::Refuse(
                    ProtocolVersion::V311,
                    rc::UNSUPPORTED_PROTOCOL_VERSION,
                    format!("unsupported protocol level {level}"),
                ))
            }
            Err(error) => {
                tracing::info!(%error, "malformed MQTT CONNECT");
                return Err(ConnectFailure::Quiet("malformed CONNECT"));
            }
        }
        if read_buf.capacity() - read_buf.len() < 1024 {
            read_buf.reserve(crate::net::MIN_READ);
        }
        match stream.read_buf(read_buf).await {
            Ok(0) | Err(_) => return Err(ConnectFailure::Quiet("socket closed")),
            Ok(_) => {}
        }
    }
}

async fn refuse(stream: &mut TcpStream, version: ProtocolVersion, reason: u8) {
    let mut out = BytesMut::new();
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: ConnAckProperties::default(),
    });
    if Codec::encode_with(version, &connack, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

/// Splits `vhost:user` at the last colon, as RabbitMQ does.
fn split_vhost_user(username: &str) -> (Option<&str>, &str) {
    match username.rsplit_once(':') {
        Some((vhost, user)) => (Some(vhost), user),
        None => (None, username),
    }
}

async fn accept_connect(
    mut stream: TcpStream,
    peer: SocketAddr,
    read_buf: BytesMut,
    mut codec: Codec,
    connect: Connect,
    shared: Arc<Shared>,
) -> Option<Box<MqttConnection>> {
    let version = connect.protocol;
    // Authentication: anonymous clients act as the default user, as RabbitMQ allows.
    let (vhost_name, user) = match &connect.username {
        Some(username) => {
            let (vhost, user) = split_vhost_user(username);
            let password = connect.password.clone().unwrap_or_default();
            if !crate::auth::check_password(user, &password) {
                tracing::warn!(%peer, user, "MQTT login refused");
                refuse(&mut stream, version, rc::BAD_USER_NAME_OR_PASSWORD).await;
                return None;
            }
            (vhost.unwrap_or("/").to_string(), user.to_string())
        }
        None if connect.password.is_some() => {
            refuse(&mut stream, version, rc::BAD_USER_NAME_OR_PASSWORD).await;
            return None;
        }
        None => ("/".to_string(), crate::auth::DEFAULT_USER.to_string()),
    };
    let Some(vhost) = shared.core.vhost(&vhost_name) else {
        tracing::warn!(%peer, vhost = %vhost_name, "MQTT login to a missing vhost");
        refuse(&mut stream, version, rc::NOT_AUTHORIZED).await;
        return None;
    };

    let persistent = match version {
        ProtocolVersion::V311 => !connect.clean_start,
        ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0) > 0,
    };
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if version == ProtocolVersion::V311 && !connect.clean_start {
            // [MQTT-3.1.3-8]: a persistent session needs a client id.
            refuse(&mut stream, version, rc::CLIENT_IDENTIFIER_NOT_VALID).await;
            return None;
        }
        let generated = format!("warren-{:024x}", rand::random::<u128>() >> 32);
        assigned = Some(generated.clone());
        generated
    } else {
        connect.client_id.clone()
    };

    let id = shared.core.next_connection_id();
    let kick = Kick::default();
    let claim = shared
        .sessions
        .claim(&vhost.name, &client_id, id, kick.clone())
        .await;
    // A shutdown kicks every registered connection; one that registered just as it began
    // may have been missed, so it kicks itself (the registry lock orders the two).
    if shared.shutdown.is_cancelled() {
        kick.kick();
    }
    let session_present = !connect.clean_start && claim.state.is_some();
    // A resumed session keeps its queue whatever expiry this CONNECT carries: that expiry
    // only decides what happens when this connection ends [MQTT-3.1.2-5].
    let persistent = persistent || session_present;
    let mut session = if connect.clean_start {
        None
    } else {
        claim.state
    }
    .unwrap_or_default();
    if connect.clean_start {
        // A clean start discards the old session, queue included [MQTT-3.1.2-4].
        let _ = vhost.delete_queue(&session_queue_name(&client_id, true), false, false, id);
        shared.persistence.session_ended(&vhost.name, &client_id);
    }
    session.expiry = match version {
        ProtocolVersion::V311 => None,
        ProtocolVersion::V5 => match connect.properties.session_expiry_interval {
            None | Some(0) => Some(Duration::ZERO),
            Some(u32::MAX) => None,
            Some(seconds) => Some(Duration::from_secs(seconds.into())),
        },
    };
    codec.set_max_outgoing_packet_size(connect.properties.maximum_packet_size);

    let keep_alive = connect.keep_alive;
    let settings = &shared.settings;
    let properties = match version {
        ProtocolVersion::V311 => ConnAckProperties::default(),
        ProtocolVersion::V5 => ConnAckProperties {
            receive_maximum: Some(settings.receive_maximum),
            maximum_packet_size: Some(settings.max_packet_size),
            topic_alias_maximum: Some(settings.topic_alias_maximum),
            assigned_client_identifier: assigned,
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            ..ConnAckProperties::default()
        },
    };
    let mut out = BytesMut::new();
    let connack = Packet::ConnAck(ConnAck {
        session_present,
        reason: rc::SUCCESS,
        properties,
    });
    if codec.encode(&connack, &mut out).is_err() {
        return None;
    }
    tracing::info!(%peer, user = %user, vhost = %vhost.name, client_id = %client_id, protocol = ?version, connection = id.0, "connection opened");
    let client_receive_maximum = connect
        .properties
        .receive_maximum
        .unwrap_or(u16::MAX)
        .clamp(1, settings.max_inflight);
    let mut connection = Box::new(MqttConnection {
        id,
        stream,
        read_buf,
        read_size: crate::net::ReadSize::new(READ_CHUNK),
        out,
        codec,
        version,
        vhost,
        client_id,
        keep_alive,
        last_read: Instant::now(),
        session,
        persistent,
        generation: claim.generation,
        kick,
        will: connect.will.map(Box::new),
        delivering: None,
        next_packet_id: 1,
        client_receive_maximum,
        inbound_inflight: 0,
        aliases: None,
        client_topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
        publishing: None,
        sync_wait: None,
        finished: false,
        send_will: true,
        shared,
    });
    connection.resume_session();
    Some(connection)
}

/// The queue of a session, named as RabbitMQ names it.
pub(super) fn session_queue_name(client_id: &str, persistent: bool) -> String {
    if persistent {
        format!("mqtt-subscription-{client_id}qos1")
    } else {
        format!("mqtt-subscription-{client_id}qos0")
    }
}

impl MqttConnection {
    pub(super) fn v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    /// Restarts delivery for a resumed session: consumers on its queues and PUBRELs still owed.
    fn resume_session(&mut self) {
        let pending: Vec<u16> = self.session.pending_pubrel.iter().copied().collect();
        for packet_id in pending {
            self.send(Packet::PubRel(PubRel {
                packet_id,
                ..PubRel::default()
            }));
        }
        let subscriptions: Vec<(String, Subscription)> = self
            .session
            .subscriptions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (full, subscription) in subscriptions {
            let result = match &subscription.group {
                Some(group) => self.join_shared(&full, group, &subscription.filter),
                None => self.ensure_session_queue().map(|_| ()),
            };
            if let Err(error) = result {
                tracing::warn!(client_id = %self.client_id, %error, "could not resume subscription");
            }
        }
    }

    pub(super) fn send(&mut self, packet: Packet) {
        if let Err(error) = self.codec.encode(&packet, &mut self.out) {
            tracing::debug!(client_id = %self.client_id, %error, "packet not sent");
        }
    }

    pub(super) fn sink(&mut self) -> EventSink {
        active(&mut self.delivering).events.sink()
    }

    async fn run(&mut self) -> Closing {
        loop {
            if let Err(error) = self.flush().await {
                return Closing::new(rc::UNSPECIFIED_ERROR, format!("write failed: {error}"));
            }
            if self.finished {
                return Closing::new(rc::SUCCESS, "client disconnected");
            }
            let flow = match self.publishing.as_mut() {
                Some(publishing) => crate::net::current_flow(&mut publishing.flow),
                None => None,
            };
            let blocked = self.shared.core.memory().over_limit();
            let keep_alive_deadline = (self.keep_alive > 0).then(|| {
                let keep_alive = Duration::from_secs(self.keep_alive.into());
                self.last_read + keep_alive + keep_alive / 2
            });
            // One timer serves both the keepalive and, while blocked, the memory re-check.
            let deadline = match (keep_alive_deadline, blocked) {
                (Some(at), false) => at,
                (Some(at), true) => at.min(Instant::now() + Duration::from_millis(50)),
                (None, false) => Instant::now() + Duration::from_secs(86_400),
                (None, true) => Instant::now() + Duration::from_millis(50),
            };
            let waiting_for_sync = self.sync_wait.as_ref().is_some_and(|w| !w.acks.is_empty());
            if waiting_for_sync {
                let store = self.shared.core.store();
                let ticket = self.sync_wait.as_mut().and_then(|wait| {
                    if wait.synced.is_none() {
                        wait.synced = store.map(|store| store.synced());
                    }
                    wait.synced
                        .as_mut()
                        .map(|synced| *synced.borrow_and_update())
                });
                if let Some(ticket) = ticket {
                    self.release_synced(ticket);
                    if !self.out.is_empty() {
                        continue;
                    }
                }
            }
            let synced = self
                .sync_wait
                .as_mut()
                .and_then(|wait| wait.synced.as_mut())
                .filter(|_| waiting_for_sync);
            let events = self.delivering.as_mut().map(|d| &mut d.events);
            tokio::select! {
                biased;
                _ = self.kick.kicked() => {
                    // Shutdown kicks every connection too: one wait covers both.
                    if self.shared.shutdown.is_cancelled() {
                        return Closing::new(rc::SERVER_SHUTTING_DOWN, "broker shutdown");
                    }
                    return Closing::new(rc::SESSION_TAKEN_OVER, "session taken over by another connection");
                }
                ready = self.stream.readable(), if !blocked && flow.is_none() => {
                    let read = ready.and_then(|()| crate::net::read_ready(&self.stream, &mut self.read_buf, &mut self.read_size));
                    match read {
                        Ok(None) => {}
                        Ok(Some(0)) => return Closing::new(rc::UNSPECIFIED_ERROR, "client closed the socket"),
                        Ok(Some(_)) => {
                            self.last_read = Instant::now();
                            // readable()/try_read do not count against tokio's cooperative
                            // budget, and a consumer woken by this burst waits in this worker's
                            // LIFO slot: yield after each burst so a flooding publisher cannot
                            // starve the consumers it feeds.
                            tokio::task::yield_now().await;
                            if let Err(closing) = self.process_input() {
                                return closing;
                            }
                        }
                        Err(error) => return Closing::new(rc::UNSPECIFIED_ERROR, format!("read failed: {error}")),
                    }
                }
                event = recv_event(events) => {
                    if let Some(event) = event {
                        self.handle_event(event);
                        for _ in 1..EVENT_BATCH {
                            let next = self.delivering.as_mut().and_then(|d| d.events.try_recv());
                            match next {
                                Some(event) => self.handle_event(event),
                                None => break,
                            }
                        }
                    }
                }
                _ = crate::store::synced_changed(synced) => {}
                _ = crate::net::flow_wait(flow.clone()), if flow.is_some() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    // [MQTT-3.1.2-24]: 1.5 times the keepalive without a packet.
                    if keep_alive_deadline.is_some_and(|at| at <= Instant::now()) {
                        return Closing::new(rc::KEEP_ALIVE_TIMEOUT, "keepalive timeout");
                    }
                }
            }
        }
    }

    fn process_input(&mut self) -> Result<(), Closing> {
        self.start_input_burst();
        loop {
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(packet)) => self.handle_packet(packet)?,
                Ok(None) => break,
                Err(error) => {
                    return Err(Closing::new(
                        error.reason_code(),
                        format!("malformed packet: {error}"),
                    ))
                }
            }
            if self.finished {
                break;
            }
        }
        if self.read_buf.is_empty() {
            // Idle connections keep no read buffer.
            self.read_buf = BytesMut::new();
        }
        Ok(())
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), Closing> {
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => self.handle_puback(ack),
            Packet::PubRec(rec) => self.handle_pubrec(rec),
            Packet::PubComp(comp) => self.handle_pubcomp(comp),
            Packet::PubRel(rel) => self.handle_pubrel(rel),
            Packet::Subscribe(subscribe) => self.handle_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(unsubscribe),
            Packet::PingReq => {
                self.send(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                // Only "disconnect with will message" keeps the will [MQTT-3.14.4-3].
                self.send_will = disconnect.reason == rc::DISCONNECT_WITH_WILL;
                if let (Some(seconds), true) = (disconnect.session_expiry_interval, self.v5()) {
                    if self.session.expiry == Some(Duration::ZERO) && seconds > 0 {
                        return Err(Closing::new(
                            rc::PROTOCOL_ERROR,
                            "session expiry set on DISCONNECT after connecting with 0",
                        ));
                    }
                    // `persistent` stays: it names the session's queue, which `finish` deletes
                    // when the expiry is now 0.
                    self.session.expiry = match seconds {
                        u32::MAX => None,
                        s => Some(Duration::from_secs(s.into())),
                    };
                }
                self.finished = true;
                Ok(())
            }
            Packet::Auth(_) => Err(Closing::new(
                rc::PROTOCOL_ERROR,
                "AUTH without an authentication method",
            )),
            Packet::Connect(_) => Err(Closing::new(rc::PROTOCOL_ERROR, "second CONNECT")),
            other => Err(Closing::new(
                rc::PROTOCOL_ERROR,
                format!("unexpected packet from client: {other:?}"),
            )),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            // Idle connections keep no write buffer either.
            self.out = BytesMut::new();
        }
        if let Some(delivering) = self.delivering.as_mut() {
            delivering.window_grants.release();
        }
        Ok(())
    }

    /// Ends the connection: tells a v5 client why, returns unacknowledged deliveries to
    /// their queues, publishes the will if due, and hands the session back.
    async fn finish(mut self: Box<Self>, closing: Closing) {
        if self.v5() && closing.reason != rc::SUCCESS && closing.reason != rc::UNSPECIFIED_ERROR {
            self.send(Packet::Disconnect(Disconnect {
                reason: closing.reason,
                ..Disconnect::default()
            }));
        }
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        // The peer address is not kept per connection (every idle client would pay for
        // it): "connection opened" logged it with the same connection id.
        tracing::info!(client_id = %self.client_id, connection = self.id.0, reason = %closing.log, "connection closed");

        for (id, source) in active(&mut self.delivering).consumers.drain() {
            self.vhost.cancel(&source.queue, id);
        }
        for (_, outbound) in active(&mut self.delivering).outbound.drain() {
            if let Some((queue, seq)) = outbound.source {
                queue.requeue([seq]);
            }
        }
        if let Some(delivering) = self.delivering.as_mut() {
            for delivery in delivering.events.close() {
                delivery.queue.requeue([delivery.seq]);
            }
        }
        let keep_session = self.persistent && self.session.expiry != Some(Duration::ZERO);
        if !keep_session {
            // The session ends: its queue (exclusive or not) goes with it.
            let name = session_queue_name(&self.client_id, self.persistent);
            let _ = self.vhost.delete_queue(&name, false, false, self.id);
            self.vhost.connection_closed(self.id);
        }
        let will = if self.send_will {
            self.will.take()
        } else {
            None
        };
        let delay = will
            .as_ref()
            .and_then(|w| w.delay_interval)
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(Duration::ZERO);
        let shared = self.shared.clone();
        let vhost = self.vhost.clone();
        let client_id = self.client_id.clone();
        let generation = self.generation;
        let expiry = self.session.expiry;
        if keep_session {
            shared
                .persistence
                .session_changed(&vhost.name, &client_id, &self.session);
        } else {
            shared.persistence.session_ended(&vhost.name, &client_id);
        }
        let state = keep_session.then(|| std::mem::take(&mut self.session));
        shared
            .sessions
            .release(&vhost.name, &client_id, self.id, state);

        if let Some(will) = will {
            if delay.is_zero() || !keep_session {
                publish_will(&shared, &vhost, will);
            } else {
                let shared2 = shared.clone();
                let vhost2 = vhost.clone();
                let client2 = client_id.clone();
                let wait = expiry.map_or(delay, |e| e.min(delay));
                shared.tasks.spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shared2.shutdown.cancelled() => return,
                    }
                    // The will is not sent if the session was resumed meanwhile [MQTT-3.1.3-9].
                    if shared2
                        .sessions
                        .is_dormant(&vhost2.name, &client2, generation)
                    {
                        publish_will(&shared2, &vhost2, will);
                    }
                });
            }
        }
        if keep_session {
            if let Some(expiry) = expiry {
                schedule_expiry(&shared, vhost, client_id, generation, expiry);
            }
        }
    }
}

/// Ends a dormant persistent session after `expiry` unless it was resumed meanwhile.
pub(super) fn schedule_expiry(
    shared: &Arc<Shared>,
    vhost: Arc<Vhost>,
    client_id: String,
    generation: u64,
    expiry: Duration,
) {
    let shared2 = shared.clone();
    shared.tasks.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(expiry) => {}
            _ = shared2.shutdown.cancelled() => return,
        }
        if shared2.sessions.expire(&vhost.name, &client_id, generation) {
            let name = session_queue_name(&client_id, true);
            let _ = vhost.delete_queue(&name, false, false, ConnectionId(0));
            shared2.persistence.session_ended(&vhost.name, &client_id);
            tracing::info!(client_id = %client_id, "MQTT session expired");
        }
    });
}

/// The next consumer event; never resolves while the connection has no consumer.
async fn recv_event(events: Option<&mut ConsumerEvents>) -> Option<ConsumerEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}
