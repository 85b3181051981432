//! One MQTT connection: CONNECT, then a loop over client packets, core deliveries,
//! keepalive and take-over, flushing all output once per burst.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warren_mqtt::reason as rc;
use warren_mqtt::{
    Codec, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, Packet, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
};

use super::retained::Retained;
use super::session::{SessionState, Subscription};
use super::translate::{
    message_from_publish, publish_properties, published_qos, routing_key_to_topic,
    topic_to_routing_key,
};
use super::Shared;
use crate::core::{
    ConnectionId, ConsumerEvent, ConsumerId, ConsumerSpec, Delivery, EventSink, Message, Queue,
    QueueDeclare, RouteTargets, Routed, Table, Vhost, WindowGrants,
};
use crate::store::Ticket;

const READ_CHUNK: usize = 16 * 1024;
const EVENT_BATCH: usize = 512;

/// Why the connection ends, and what the client is told (v5 DISCONNECT reason).
struct Closing {
    reason: u8,
    log: String,
}

impl Closing {
    fn new(reason: u8, log: impl Into<String>) -> Closing {
        Closing {
            reason,
            log: log.into(),
        }
    }
}

/// A delivery sent with QoS 1 or 2 and not yet acknowledged by the client.
struct Outbound {
    /// The queue and position to ack in the core (None for retained messages).
    source: Option<(Arc<Queue>, u64)>,
}

/// What a consuming connection keeps about its deliveries.
#[derive(Default)]
struct Delivering {
    consumers: HashMap<ConsumerId, ConsumerSource>,
    events: Option<(EventSink, mpsc::UnboundedReceiver<ConsumerEvent>)>,
    outbound: HashMap<u16, Outbound>,
    /// Delivery window to hand back to queues once the current output is written.
    window_grants: WindowGrants,
}

/// The delivery state, allocated on first use.
fn active(delivering: &mut Option<Box<Delivering>>) -> &mut Delivering {
    delivering.get_or_insert_with(Box::default)
}

/// Topic aliases (MQTT 5) of one connection.
#[derive(Default)]
struct Aliases {
    /// Set by the client: alias → topic.
    inbound: HashMap<u16, String>,
    /// Chosen by the broker: topic → alias.
    outbound: HashMap<String, u16>,
}

/// Where a consumer of this connection reads from.
struct ConsumerSource {
    queue: Arc<Queue>,
    /// The full `$share/…` filter for shared subscriptions; None for the session queue.
    shared: Option<String>,
}

struct MqttConnection {
    shared: Arc<Shared>,
    id: ConnectionId,
    peer: SocketAddr,
    stream: TcpStream,
    read_buf: BytesMut,
    out: BytesMut,
    codec: Codec,
    version: ProtocolVersion,
    vhost: Arc<Vhost>,
    client_id: String,
    keep_alive: Option<Duration>,
    last_read: Instant,
    session: SessionState,
    persistent: bool,
    generation: u64,
    kick: CancellationToken,
    /// Boxed: most of the struct's size otherwise, and absent for many clients.
    will: Option<Box<Will>>,
    /// Consumers, deliveries in flight and their channel; allocated once the connection
    /// first consumes, so a connection that only publishes or idles does not pay for them.
    delivering: Option<Box<Delivering>>,
    next_packet_id: u16,
    /// Client's Receive Maximum: QoS 1/2 deliveries in flight towards it.
    client_receive_maximum: u16,
    /// QoS 1/2 publishes from the client not yet completed (PUBACK/PUBCOMP not sent).
    inbound_inflight: usize,
    /// Topic aliases in both directions, allocated on first use.
    aliases: Option<Box<Aliases>>,
    client_topic_alias_maximum: u16,
    /// Routing scratch space, allocated on the first publish.
    targets: Option<Box<RouteTargets>>,
    /// Acknowledgements held until the store syncs their message (ticket, packet).
    awaiting_sync: std::collections::VecDeque<(Ticket, Packet)>,
    /// How far the store has synced; taken from the store when first needed.
    synced: Option<tokio::sync::watch::Receiver<Ticket>>,
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
            read_buf.reserve(4096);
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
    let kick = shared.shutdown.child_token();
    let claim = shared
        .sessions
        .claim(&vhost.name, &client_id, id, kick.clone())
        .await;
    let session_present = !connect.clean_start && claim.state.is_some();
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

    let keep_alive =
        (connect.keep_alive > 0).then(|| Duration::from_secs(connect.keep_alive.into()));
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
        peer,
        stream,
        read_buf,
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
        targets: None,
        awaiting_sync: std::collections::VecDeque::new(),
        synced: None,
        finished: false,
        send_will: true,
        shared,
    });
    connection.resume_session();
    Some(connection)
}

/// The queue of a session, named as RabbitMQ names it.
fn session_queue_name(client_id: &str, persistent: bool) -> String {
    if persistent {
        format!("mqtt-subscription-{client_id}qos1")
    } else {
        format!("mqtt-subscription-{client_id}qos0")
    }
}

impl MqttConnection {
    fn v5(&self) -> bool {
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

    fn send(&mut self, packet: Packet) {
        if let Err(error) = self.codec.encode(&packet, &mut self.out) {
            tracing::debug!(client_id = %self.client_id, %error, "packet not sent");
        }
    }

    fn sink(&mut self) -> EventSink {
        let delivering = active(&mut self.delivering);
        match &delivering.events {
            Some((sink, _)) => sink.clone(),
            None => {
                let (sink, events) = mpsc::unbounded_channel();
                delivering.events = Some((sink.clone(), events));
                sink
            }
        }
    }

    async fn run(&mut self) -> Closing {
        loop {
            if let Err(error) = self.flush().await {
                return Closing::new(rc::UNSPECIFIED_ERROR, format!("write failed: {error}"));
            }
            if self.finished {
                return Closing::new(rc::SUCCESS, "client disconnected");
            }
            let blocked = self.shared.core.memory().over_limit();
            let keep_alive_deadline = self.keep_alive.map(|ka| self.last_read + ka + ka / 2);
            // One timer serves both the keepalive and, while blocked, the memory re-check.
            let deadline = match (keep_alive_deadline, blocked) {
                (Some(at), false) => at,
                (Some(at), true) => at.min(Instant::now() + Duration::from_millis(50)),
                (None, false) => Instant::now() + Duration::from_secs(86_400),
                (None, true) => Instant::now() + Duration::from_millis(50),
            };
            let waiting_for_sync = !self.awaiting_sync.is_empty();
            if waiting_for_sync {
                if self.synced.is_none() {
                    self.synced = self.shared.core.store().map(|store| store.synced());
                }
                if let Some(synced) = self.synced.as_mut() {
                    let ticket = *synced.borrow_and_update();
                    self.release_synced(ticket);
                    if !self.out.is_empty() {
                        continue;
                    }
                }
            }
            let synced = self.synced.as_mut().filter(|_| waiting_for_sync);
            let events = self
                .delivering
                .as_mut()
                .and_then(|d| d.events.as_mut())
                .map(|(_, rx)| rx);
            tokio::select! {
                biased;
                _ = self.kick.cancelled() => {
                    // The kick token is a child of the shutdown token: one wait covers both.
                    if self.shared.shutdown.is_cancelled() {
                        return Closing::new(rc::SERVER_SHUTTING_DOWN, "broker shutdown");
                    }
                    return Closing::new(rc::SESSION_TAKEN_OVER, "session taken over by another connection");
                }
                ready = self.stream.readable(), if !blocked => {
                    let read = ready.and_then(|()| crate::net::read_ready(&self.stream, &mut self.read_buf, READ_CHUNK));
                    match read {
                        Ok(None) => {}
                        Ok(Some(0)) => return Closing::new(rc::UNSPECIFIED_ERROR, "client closed the socket"),
                        Ok(Some(_)) => {
                            self.last_read = Instant::now();
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
                            let next = self
                                .delivering
                                .as_mut()
                                .and_then(|d| d.events.as_mut())
                                .map(|(_, rx)| rx.try_recv());
                            match next {
                                Some(Ok(event)) => self.handle_event(event),
                                _ => break,
                            }
                        }
                    }
                }
                _ = crate::store::synced_changed(synced) => {}
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
            Packet::PubAck(ack) => {
                if let Some(outbound) = active(&mut self.delivering).outbound.remove(&ack.packet_id)
                {
                    if let Some((queue, seq)) = outbound.source {
                        queue.ack([seq]);
                    }
                }
                Ok(())
            }
            Packet::PubRec(rec) => {
                let reason = match active(&mut self.delivering).outbound.remove(&rec.packet_id) {
                    Some(outbound) => {
                        // Delivered: the core forgets it; the packet id stays taken until PUBCOMP.
                        if let Some((queue, seq)) = outbound.source {
                            queue.ack([seq]);
                        }
                        self.session.pending_pubrel.insert(rec.packet_id);
                        rc::SUCCESS
                    }
                    None if self.session.pending_pubrel.contains(&rec.packet_id) => rc::SUCCESS,
                    None => rc::PACKET_IDENTIFIER_NOT_FOUND,
                };
                self.send(Packet::PubRel(PubRel {
                    packet_id: rec.packet_id,
                    reason,
                    ..PubRel::default()
                }));
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.session.pending_pubrel.remove(&comp.packet_id);
                Ok(())
            }
            Packet::PubRel(rel) => {
                let known = self.session.incoming_qos2.remove(&rel.packet_id);
                if known {
                    self.inbound_inflight = self.inbound_inflight.saturating_sub(1);
                }
                self.send(Packet::PubComp(PubComp {
                    packet_id: rel.packet_id,
                    reason: if known {
                        rc::SUCCESS
                    } else {
                        rc::PACKET_IDENTIFIER_NOT_FOUND
                    },
                    ..PubComp::default()
                }));
                Ok(())
            }
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
                    self.session.expiry = match seconds {
                        u32::MAX => None,
                        s => Some(Duration::from_secs(s.into())),
                    };
                    self.persistent = seconds > 0;
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

    fn handle_publish(&mut self, mut publish: Publish) -> Result<(), Closing> {
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.shared.settings.topic_alias_maximum {
                return Err(Closing::new(
                    rc::TOPIC_ALIAS_INVALID,
                    format!("topic alias {alias} out of range"),
                ));
            }
            if publish.topic.is_empty() {
                match self.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return Err(Closing::new(
                            rc::PROTOCOL_ERROR,
                            format!("unknown topic alias {alias}"),
                        ))
                    }
                }
            } else {
                self.aliases
                    .get_or_insert_with(Box::default)
                    .inbound
                    .insert(alias, publish.topic.clone());
            }
        }
        if !warren_mqtt::topic::valid_topic_name(&publish.topic) {
            return Err(Closing::new(
                rc::TOPIC_NAME_INVALID,
                format!("invalid topic name {:?}", publish.topic),
            ));
        }
        if publish.qos != QoS::AtMostOnce
            && self.inbound_inflight >= usize::from(self.shared.settings.receive_maximum)
        {
            return Err(Closing::new(
                rc::RECEIVE_MAXIMUM_EXCEEDED,
                "client exceeded the receive maximum",
            ));
        }
        if publish.qos == QoS::ExactlyOnce
            && self.session.incoming_qos2.contains(&publish.packet_id)
        {
            // A resend of a publish already routed: acknowledge again, do not route twice.
            self.send(Packet::PubRec(PubRec {
                packet_id: publish.packet_id,
                ..PubRec::default()
            }));
            return Ok(());
        }
        let mut message = message_from_publish(
            &self.shared.settings.exchange,
            &publish.topic,
            publish.qos,
            publish.payload.clone(),
            &publish.properties,
        );
        message.origin = Some(self.id);
        if publish.retain {
            self.retain(&publish.topic, publish.qos, &message);
        }
        let ticket = self.route(message);
        let ack = match publish.qos {
            QoS::AtMostOnce => return Ok(()),
            QoS::AtLeastOnce => Packet::PubAck(PubAck {
                packet_id: publish.packet_id,
                ..PubAck::default()
            }),
            QoS::ExactlyOnce => {
                self.session.incoming_qos2.insert(publish.packet_id);
                self.inbound_inflight += 1;
                Packet::PubRec(PubRec {
                    packet_id: publish.packet_id,
                    ..PubRec::default()
                })
            }
        };
        // The acknowledgement of a message written to disk leaves only after the fsync, and
        // acknowledgements stay in order.
        if ticket.is_some() || !self.awaiting_sync.is_empty() {
            self.awaiting_sync.push_back((ticket.unwrap_or(0), ack));
        } else {
            self.send(ack);
        }
        Ok(())
    }

    fn retain(&self, topic: &str, qos: QoS, message: &Message) {
        let retained = (!message.body.is_empty()).then(|| Retained {
            message: Arc::new(message.clone()),
            qos,
            expires_at: message
                .properties
                .expiration
                .as_deref()
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| std::time::Instant::now() + Duration::from_millis(ms)),
        });
        self.shared.retained.set(&self.vhost.name, topic, retained);
        self.shared.persistence.retained_changed();
    }

    /// Routes a message through the MQTT exchange into the core; returns the store ticket
    /// when it was persisted.
    fn route(&mut self, message: Message) -> Option<Ticket> {
        let targets = self.targets.get_or_insert_with(Box::default);
        publish_to_core(&self.shared, &self.vhost, message, targets)
    }

    /// Sends the acknowledgements whose messages are now on disk.
    fn release_synced(&mut self, synced: Ticket) {
        while let Some((ticket, _)) = self.awaiting_sync.front() {
            if *ticket > synced {
                break;
            }
            if let Some((_, ack)) = self.awaiting_sync.pop_front() {
                self.send(ack);
            }
        }
    }

    fn ensure_session_queue(&mut self) -> Result<Arc<Queue>, crate::core::CoreError> {
        let name = session_queue_name(&self.client_id, self.persistent);
        let declared = self.vhost.declare_queue(
            QueueDeclare {
                name: name.clone(),
                durable: self.persistent,
                exclusive: !self.persistent,
                auto_delete: false,
                ..QueueDeclare::default()
            },
            self.id,
        )?;
        let queue = declared.queue;
        let consuming = active(&mut self.delivering)
            .consumers
            .values()
            .any(|source| source.shared.is_none());
        if !consuming {
            self.start_consumer(&queue, None)?;
        }
        Ok(queue)
    }

    fn start_consumer(
        &mut self,
        queue: &Arc<Queue>,
        shared: Option<String>,
    ) -> Result<(), crate::core::CoreError> {
        let id = self.shared.core.next_consumer_id();
        let spec = ConsumerSpec {
            id,
            tag: format!("mqtt-{}", id.0),
            no_ack: false,
            exclusive: false,
            prefetch: self.client_receive_maximum.into(),
            owner: self.id,
            sink: self.sink(),
        };
        active(&mut self.delivering).consumers.insert(
            id,
            ConsumerSource {
                queue: queue.clone(),
                shared,
            },
        );
        if let Err(error) = self.vhost.consume(&queue.name, spec) {
            active(&mut self.delivering).consumers.remove(&id);
            return Err(error);
        }
        Ok(())
    }

    fn join_shared(
        &mut self,
        full: &str,
        group: &str,
        filter: &str,
    ) -> Result<(), crate::core::CoreError> {
        let key = topic_to_routing_key(filter);
        let name = format!("mqtt-shared-{group}-{key}");
        let declared = self.vhost.declare_queue(
            QueueDeclare {
                name: name.clone(),
                auto_delete: true,
                ..QueueDeclare::default()
            },
            self.id,
        )?;
        self.vhost.bind_queue(
            &name,
            &self.shared.settings.exchange,
            &key,
            Table::default(),
            self.id,
        )?;
        let already = active(&mut self.delivering)
            .consumers
            .values()
            .any(|source| source.shared.as_deref() == Some(full));
        if !already {
            self.start_consumer(&declared.queue, Some(full.to_string()))?;
        }
        Ok(())
    }

    fn handle_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Closing> {
        if subscribe.subscription_identifier == Some(0) {
            return Err(Closing::new(
                rc::PROTOCOL_ERROR,
                "subscription identifier 0",
            ));
        }
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_to_send = Vec::new();
        for request in subscribe.filters {
            let full = request.filter.clone();
            let (group, filter) = match warren_mqtt::topic::parse_shared(&full) {
                Some(shared) => (Some(shared.group.to_string()), shared.filter.to_string()),
                None if full.starts_with("$share/") => {
                    reasons.push(self.failure_code(rc::TOPIC_FILTER_INVALID));
                    continue;
                }
                None => (None, full.clone()),
            };
            if !warren_mqtt::topic::valid_topic_filter(&filter) {
                reasons.push(self.failure_code(rc::TOPIC_FILTER_INVALID));
                continue;
            }
            let existed = self.session.subscriptions.contains_key(&full);
            let subscription = Subscription {
                filter: filter.clone(),
                qos: request.qos,
                no_local: request.no_local,
                identifier: subscribe.subscription_identifier,
                group: group.clone(),
            };
            let result = match &group {
                Some(group) => self.join_shared(&full, group, &filter),
                None => self.ensure_session_queue().and_then(|queue| {
                    self.vhost.bind_queue(
                        &queue.name,
                        &self.shared.settings.exchange,
                        &topic_to_routing_key(&filter),
                        Table::default(),
                        self.id,
                    )
                }),
            };
            match result {
                Ok(()) => {
                    self.session
                        .subscriptions
                        .insert(full, subscription.clone());
                    reasons.push(request.qos.as_u8());
                    let send_retained = group.is_none()
                        && match request.retain_handling {
                            0 => true,
                            1 => !existed,
                            _ => false,
                        };
                    if send_retained {
                        retained_to_send.push(subscription);
                    }
                }
                Err(error) => {
                    tracing::warn!(client_id = %self.client_id, %error, "subscribe failed");
                    reasons.push(self.failure_code(rc::UNSPECIFIED_ERROR));
                }
            }
        }
        self.send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            ..SubAck::default()
        }));
        self.session_changed();
        // Retained messages follow the SUBACK [MQTT-3.3.1-9].
        for subscription in retained_to_send {
            for (topic, retained) in self
                .shared
                .retained
                .matching(&self.vhost.name, &subscription.filter)
            {
                let qos = retained.qos.min(subscription.qos);
                let identifiers = subscription.identifier.into_iter().collect();
                self.deliver(
                    &topic,
                    &retained.message,
                    qos,
                    true,
                    false,
                    retained.expires_at,
                    identifiers,
                    None,
                );
            }
        }
        Ok(())
    }

    /// Saves a persistent session's subscriptions (debounced, in the background).
    fn session_changed(&self) {
        if self.persistent && self.session.expiry != Some(Duration::ZERO) {
            self.shared.persistence.session_changed(
                &self.vhost.name,
                &self.client_id,
                &self.session,
            );
        }
    }

    fn failure_code(&self, v5_reason: u8) -> u8 {
        if self.v5() {
            v5_reason
        } else {
            0x80
        }
    }

    fn handle_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Closing> {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for full in unsubscribe.filters {
            let Some(subscription) = self.session.subscriptions.remove(&full) else {
                reasons.push(rc::NO_SUBSCRIPTION_EXISTED);
                continue;
            };
            let key = topic_to_routing_key(&subscription.filter);
            match subscription.group {
                Some(_) => {
                    let found = active(&mut self.delivering)
                        .consumers
                        .iter()
                        .find(|(_, source)| source.shared.as_deref() == Some(full.as_str()))
                        .map(|(id, _)| *id);
                    if let Some(id) = found {
                        if let Some(source) = active(&mut self.delivering).consumers.remove(&id) {
                            self.requeue_outbound_of(&source.queue);
                            self.vhost.cancel(&source.queue, id);
                        }
                    }
                }
                None => {
                    let still_bound = self
                        .session
                        .subscriptions
                        .values()
                        .any(|s| s.group.is_none() && topic_to_routing_key(&s.filter) == key);
                    if !still_bound {
                        let name = session_queue_name(&self.client_id, self.persistent);
                        let _ = self.vhost.unbind_queue(
                            &name,
                            &self.shared.settings.exchange,
                            &key,
                            Table::default(),
                            self.id,
                        );
                    }
                }
            }
            reasons.push(rc::SUCCESS);
        }
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            ..UnsubAck::default()
        }));
        self.session_changed();
        Ok(())
    }

    fn requeue_outbound_of(&mut self, queue: &Arc<Queue>) {
        let ids: Vec<u16> = active(&mut self.delivering)
            .outbound
            .iter()
            .filter(|(_, o)| {
                o.source
                    .as_ref()
                    .is_some_and(|(q, _)| Arc::ptr_eq(q, queue))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(Outbound {
                source: Some((queue, seq)),
                ..
            }) = active(&mut self.delivering).outbound.remove(&id)
            {
                queue.requeue([seq]);
            }
        }
    }

    fn handle_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver(delivery) => self.handle_delivery(delivery),
            ConsumerEvent::Cancelled { consumer } => {
                active(&mut self.delivering).consumers.remove(&consumer);
            }
        }
    }

    fn handle_delivery(&mut self, delivery: Delivery) {
        let Some(source) = active(&mut self.delivering)
            .consumers
            .get(&delivery.consumer)
        else {
            delivery.queue.requeue([delivery.seq]);
            return;
        };
        let topic = routing_key_to_topic(&delivery.message.routing_key);
        // Which of this session's subscriptions the message matches decides its QoS and
        // identifiers; none matching (e.g. `#` versus a `$SYS` topic) means it is not for us.
        let mut granted: Option<QoS> = None;
        let mut identifiers = Vec::new();
        let own = delivery.message.origin == Some(self.id);
        for (full, subscription) in &self.session.subscriptions {
            if own && subscription.no_local {
                // [MQTT-3.8.3-3]: not sent back to the connection that published it.
                continue;
            }
            let relevant = match (&source.shared, &subscription.group) {
                (None, None) => true,
                (Some(shared), Some(_)) => shared == full,
                _ => false,
            };
            if relevant && warren_mqtt::topic::matches(&subscription.filter, &topic) {
                granted = Some(granted.map_or(subscription.qos, |g| g.max(subscription.qos)));
                identifiers.extend(subscription.identifier);
            }
        }
        let Some(granted) = granted else {
            delivery.queue.ack([delivery.seq]);
            self.note_delivery(&delivery);
            return;
        };
        let qos = published_qos(&delivery.message).min(granted);
        let source = Some((delivery.queue.clone(), delivery.seq));
        self.deliver(
            &topic,
            &delivery.message,
            qos,
            false,
            delivery.redelivered,
            delivery.expires_at,
            identifiers,
            source,
        );
        self.note_delivery(&delivery);
    }

    fn note_delivery(&mut self, delivery: &Delivery) {
        active(&mut self.delivering).window_grants.note(delivery);
    }

    /// Sends one PUBLISH to the client and tracks it until acknowledged.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        topic: &str,
        message: &Message,
        qos: QoS,
        retain: bool,
        dup: bool,
        expires_at: Option<std::time::Instant>,
        identifiers: Vec<u32>,
        source: Option<(Arc<Queue>, u64)>,
    ) {
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            match self.allocate_packet_id() {
                Some(id) => id,
                None => {
                    if let Some((queue, seq)) = source {
                        queue.requeue([seq]);
                    }
                    return;
                }
            }
        };
        let mut properties = if self.v5() {
            publish_properties(message, expires_at, identifiers)
        } else {
            Default::default()
        };
        let mut topic_out = topic.to_string();
        if self.v5() && self.client_topic_alias_maximum > 0 {
            let aliases = self.aliases.get_or_insert_with(Box::default);
            match aliases.outbound.get(topic) {
                Some(alias) => {
                    properties.topic_alias = Some(*alias);
                    topic_out.clear();
                }
                None => {
                    let next = aliases.outbound.len() + 1;
                    if let Ok(alias) = u16::try_from(next) {
                        if alias <= self.client_topic_alias_maximum {
                            aliases.outbound.insert(topic.to_string(), alias);
                            properties.topic_alias = Some(alias);
                        }
                    }
                }
            }
        }
        let publish = Packet::Publish(Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic: topic_out,
            packet_id,
            payload: message.body.clone(),
            properties,
        });
        if let Err(error) = self.codec.encode(&publish, &mut self.out) {
            // Too large for the client's Maximum Packet Size: dropped, as the spec says.
            tracing::debug!(client_id = %self.client_id, %error, "delivery dropped");
            if let Some((queue, seq)) = source {
                queue.ack([seq]);
            }
            return;
        }
        if qos == QoS::AtMostOnce {
            if let Some((queue, seq)) = source {
                queue.ack([seq]);
            }
        } else {
            active(&mut self.delivering)
                .outbound
                .insert(packet_id, Outbound { source });
        }
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !active(&mut self.delivering).outbound.contains_key(&id)
                && !self.session.pending_pubrel.contains(&id)
            {
                return Some(id);
            }
        }
        None
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
        tracing::info!(peer = %self.peer, client_id = %self.client_id, connection = self.id.0, reason = %closing.log, "connection closed");

        for (id, source) in active(&mut self.delivering).consumers.drain() {
            self.vhost.cancel(&source.queue, id);
        }
        for (_, outbound) in active(&mut self.delivering).outbound.drain() {
            if let Some((queue, seq)) = outbound.source {
                queue.requeue([seq]);
            }
        }
        if let Some((_, mut events)) = self.delivering.as_mut().and_then(|d| d.events.take()) {
            events.close();
            while let Ok(event) = events.try_recv() {
                if let ConsumerEvent::Deliver(delivery) = event {
                    delivery.queue.requeue([delivery.seq]);
                }
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

async fn recv_event(
    events: Option<&mut mpsc::UnboundedReceiver<ConsumerEvent>>,
) -> Option<ConsumerEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

fn publish_will(shared: &Shared, vhost: &Vhost, will: Box<Will>) {
    let message = message_from_publish(
        &shared.settings.exchange,
        &will.topic,
        will.qos,
        will.payload.clone(),
        &will.properties,
    );
    if will.retain {
        let retained = (!message.body.is_empty()).then(|| Retained {
            message: Arc::new(message.clone()),
            qos: will.qos,
            expires_at: None,
        });
        shared.retained.set(&vhost.name, &will.topic, retained);
        shared.persistence.retained_changed();
    }
    publish_to_core(shared, vhost, message, &mut RouteTargets::default());
}

/// Routes an MQTT-originated message through the configured exchange.
fn publish_to_core(
    shared: &Shared,
    vhost: &Vhost,
    message: Message,
    targets: &mut RouteTargets,
) -> Option<Ticket> {
    match vhost.exchange(&shared.settings.exchange) {
        Ok(exchange) => match vhost.publish(&exchange, message, targets) {
            Ok(Routed::Queued { ticket, .. }) => ticket,
            Ok(Routed::Unroutable(_)) => None,
            Err(error) => {
                tracing::warn!(%error, "MQTT publish refused by the core");
                None
            }
        },
        Err(_) => {
            tracing::warn!(exchange = %shared.settings.exchange, "MQTT exchange missing; message dropped");
            None
        }
    }
}
