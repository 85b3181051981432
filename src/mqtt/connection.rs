//! One MQTT connection: CONNECT, then a loop over client packets, core deliveries,
//! keepalive and take-over, flushing all output once per burst.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;
use warren_mqtt::reason as rc;
use warren_mqtt::{
    Codec, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, Packet, ProtocolVersion,
    PubRel, Will,
};

use super::routing::publish_will;
use super::session::{Kick, SessionState, Subscription};
use super::translate::topic_to_routing_key;
use super::Shared;
use crate::core::{
    ConnectionId, ConsumerEvent, ConsumerEvents, ConsumerId, EventSink, Queue, RouteTargets, Vhost,
    WindowGrants,
};
use crate::listener::{Accepted, Ended, Link, ReadGate, Session};
use crate::store::Ticket;

const READ_CHUNK: usize = 16 * 1024;

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
    /// PUBACKs among `acks`: QoS 1 publishes still counting against the Receive Maximum.
    pub(super) held_pubacks: usize,
}

/// What a publishing connection keeps between publishes.
#[derive(Default)]
pub(super) struct Publishing {
    /// Routing scratch space.
    pub(super) targets: RouteTargets,
    /// A pause for a congested queue this connection published to.
    pub(super) flow: crate::listener::Flow,
    /// PUBACKs sent while processing the current burst of input (see `start_input_burst`).
    pub(super) pubacks_this_burst: usize,
    /// The routing key of the last publish, so [`super::RecentTopics`] hears of a topic only
    /// when the publisher changes topics (a device publishing to one topic costs a compare).
    pub(super) last_topic: crate::core::ShortString,
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
    pub(super) out: BytesMut,
    pub(super) codec: Codec,
    version: ProtocolVersion,
    pub(super) vhost: Arc<Vhost>,
    /// The user's permissions, built on the first publish or subscribe (idle connections
    /// do not carry them).
    access: Option<Box<crate::auth::AccessCheck>>,
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
    /// The connection's metrics entry: its message counters.
    pub(super) registration: crate::stats::Registration,
}

/// Serves one accepted connection (any transport) until it closes.
pub(super) async fn serve(accepted: Accepted, shared: Arc<Shared>) {
    let (mut link, opened) = Link::open(accepted, READ_CHUNK);
    // The handshake and the teardown run as boxed futures, so the task's size while a
    // connection idles is only the run loop's.
    let Some(mut connection) = Box::pin(open(&mut link, opened, shared)).await else {
        return;
    };
    let kick = connection.kick.clone();
    let closing = match link.run(&mut *connection, &kick).await {
        Ended::Finished => Closing::new(rc::SUCCESS, "client disconnected"),
        Ended::Closed(closing) => closing,
        Ended::Lost(reason) => Closing::new(rc::UNSPECIFIED_ERROR, reason),
        // Shutdown kicks every connection too: one wait covers both.
        Ended::Stopped if connection.shared.shutdown.is_cancelled() => {
            Closing::new(rc::SERVER_SHUTTING_DOWN, "broker shutdown")
        }
        Ended::Stopped if kick.reason().is_some() => {
            Closing::new(rc::ADMINISTRATIVE_ACTION, kick.reason().unwrap_or_default())
        }
        Ended::Stopped => Closing::new(
            rc::SESSION_TAKEN_OVER,
            "session taken over by another connection",
        ),
    };
    Box::pin(async move {
        connection.say_goodbye(&closing);
        let _ = link.write(&mut connection.out).await;
        link.stream.shutdown().await;
        connection.end(closing);
    })
    .await;
}

/// Reads and answers CONNECT; None when the connection was refused or went away.
async fn open(
    link: &mut Link,
    opened: crate::listener::Opened,
    shared: Arc<Shared>,
) -> Option<Box<MqttConnection>> {
    let crate::listener::Opened {
        peer,
        certificate_name,
        registration,
    } = opened;
    let registry = registration.registry().clone();
    let mut codec = Codec::new(shared.settings.max_packet_size as usize);
    let timeout = shared.settings.connect_timeout;
    let first = tokio::select! {
        first = tokio::time::timeout(timeout, read_connect(link, &mut codec)) => first,
        _ = shared.shutdown.cancelled() => return None,
    };
    let connect = match first {
        Ok(Ok(connect)) => connect,
        Ok(Err(ConnectFailure::Quiet(reason))) => {
            tracing::info!(%peer, reason, "MQTT connection closed before CONNECT");
            return None;
        }
        Ok(Err(ConnectFailure::Refuse(refusal))) => {
            tracing::warn!(%peer, reason = refusal.log, "MQTT CONNECT refused");
            refuse(link, refusal).await;
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "MQTT client sent no CONNECT in time");
            return None;
        }
    };
    let login = Login {
        peer,
        certificate_name,
        transport: link.stream.transport(),
        registration,
    };
    let protocol = match connect.protocol {
        ProtocolVersion::V311 => crate::stats::Protocol::Mqtt311,
        ProtocolVersion::V5 => crate::stats::Protocol::Mqtt50,
    };
    match accept_connect(codec, connect, login, shared).await {
        Ok(connection) => {
            registry.auth_attempt(protocol, true);
            Some(connection)
        }
        Err(refusal) => {
            if refusal.reason == rc::BAD_USER_NAME_OR_PASSWORD
                || refusal.reason == rc::NOT_AUTHORIZED
            {
                registry.auth_attempt(protocol, false);
            }
            tracing::warn!(%peer, reason = refusal.log, "MQTT CONNECT refused");
            refuse(link, refusal).await;
            None
        }
    }
}

/// A CONNECT refused with a CONNACK reason code.
struct Refusal {
    version: ProtocolVersion,
    reason: u8,
    log: String,
}

impl Refusal {
    fn new(version: ProtocolVersion, reason: u8, log: impl Into<String>) -> Refusal {
        Refusal {
            version,
            reason,
            log: log.into(),
        }
    }
}

enum ConnectFailure {
    Quiet(&'static str),
    Refuse(Refusal),
}

async fn read_connect(link: &mut Link, codec: &mut Codec) -> Result<Connect, ConnectFailure> {
    loop {
        match codec.decode(&mut link.read_buf) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(_)) => return Err(ConnectFailure::Quiet("first packet was not CONNECT")),
            Ok(None) => {}
            Err(DecodeError::UnsupportedProtocolVersion(level)) => {
                return Err(ConnectFailure::Refuse(Refusal::new(
                    ProtocolVersion::V311,
                    rc::UNSUPPORTED_PROTOCOL_VERSION,
                    format!("unsupported protocol level {level}"),
                )))
            }
            Err(error) => {
                tracing::info!(%error, "malformed MQTT CONNECT");
                return Err(ConnectFailure::Quiet("malformed CONNECT"));
            }
        }
        match link.fill().await {
            Ok(0) | Err(_) => return Err(ConnectFailure::Quiet("socket closed")),
            Ok(_) => {}
        }
    }
}

async fn refuse(link: &mut Link, refusal: Refusal) {
    let mut out = BytesMut::new();
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: refusal.reason,
        properties: ConnAckProperties::default(),
    });
    if Codec::encode_with(refusal.version, &connack, &mut out).is_ok() {
        let _ = link.write(&mut out).await;
    }
    link.stream.shutdown().await;
}

/// Who is connecting, as the transport saw it.
struct Login {
    peer: SocketAddr,
    /// The verified client certificate's CN (MQTT `ssl_cert_login`).
    certificate_name: Option<String>,
    transport: &'static str,
    /// The connection's metrics entry.
    registration: crate::stats::Registration,
}

/// Splits `vhost:user` at the last colon, as RabbitMQ does.
fn split_vhost_user(username: &str) -> (Option<&str>, &str) {
    match username.rsplit_once(':') {
        Some((vhost, user)) => (Some(vhost), user),
        None => (None, username),
    }
}

/// Authenticates a CONNECT and opens (or resumes) its session; no socket involved.
async fn accept_connect(
    mut codec: Codec,
    connect: Connect,
    login: Login,
    shared: Arc<Shared>,
) -> Result<Box<MqttConnection>, Refusal> {
    let version = connect.protocol;
    let peer = login.peer;
    // Wrong credentials: v5 says "bad user name or password" (0x86); v3 answers 5 "not
    // authorised", as RabbitMQ's plugin does.
    let bad_login = |log: String| {
        let reason = match version {
            ProtocolVersion::V311 => rc::NOT_AUTHORIZED,
            ProtocolVersion::V5 => rc::BAD_USER_NAME_OR_PASSWORD,
        };
        Refusal::new(version, reason, log)
    };
    let users = shared.core.users();
    // A loopback-only user from elsewhere is not authorised; anything else is a bad login.
    let refusal = |error: crate::auth::LoginError| match error {
        crate::auth::LoginError::LoopbackOnly(_) => {
            Refusal::new(version, rc::NOT_AUTHORIZED, error.to_string())
        }
        crate::auth::LoginError::InvalidCredentials(_) => bad_login(error.to_string()),
    };
    // Authentication: anonymous clients act as the default user, as RabbitMQ allows; with
    // certificate login on, a client with a verified certificate and no user name logs in
    // as the certificate's CN (RabbitMQ's `mqtt.ssl_cert_login`).
    let (vhost_name, user) = match (&connect.username, &login.certificate_name) {
        (Some(username), _) => {
            let (vhost, user) = split_vhost_user(username);
            let password = connect.password.clone().unwrap_or_default();
            users.login(user, &password, peer).map_err(refusal)?;
            (
                vhost.unwrap_or(&shared.settings.vhost).to_string(),
                user.to_string(),
            )
        }
        (None, _) if connect.password.is_some() => {
            return Err(bad_login("password without a user name".into()));
        }
        (None, Some(name)) if shared.settings.ssl_cert_login => {
            users.login_without_password(name, peer).map_err(refusal)?;
            (shared.settings.vhost.clone(), name.clone())
        }
        (None, _) => {
            // Anonymous clients log in as `mqtt.default_user`, as RabbitMQ's plugin does.
            let settings = &shared.settings;
            if !settings.allow_anonymous {
                return Err(bad_login(
                    "anonymous login refused (mqtt.allow_anonymous = false)".into(),
                ));
            }
            let user = settings.default_user.as_str();
            users
                .login(user, settings.default_pass.as_bytes(), peer)
                .map_err(refusal)?;
            (shared.settings.vhost.clone(), user.to_string())
        }
    };
    let Some(vhost) = shared.core.vhost(&vhost_name) else {
        return Err(Refusal::new(
            version,
            rc::NOT_AUTHORIZED,
            format!("login to a missing vhost {vhost_name}"),
        ));
    };
    if let Some(will) = &connect.will {
        // The will is published later on the client's behalf: RabbitMQ checks it now.
        let mut access =
            crate::auth::AccessCheck::new(users.clone(), &user, &vhost.name, &connect.client_id);
        let exchange = &shared.settings.exchange;
        let allowed = access
            .check(
                crate::auth::Access::Write,
                crate::auth::Resource::Exchange,
                exchange,
            )
            .and_then(|()| {
                access.check_topic(
                    crate::auth::Access::Write,
                    exchange,
                    &topic_to_routing_key::<String>(&will.topic),
                )
            });
        if let Err(refused) = allowed {
            return Err(Refusal::new(version, rc::NOT_AUTHORIZED, refused.0));
        }
    }
    if users.grant(&user, &vhost.name).is_none() {
        return Err(Refusal::new(
            version,
            rc::NOT_AUTHORIZED,
            format!("access to vhost '{vhost_name}' refused for user '{user}'"),
        ));
    }

    let persistent = match version {
        ProtocolVersion::V311 => !connect.clean_start,
        ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0) > 0,
    };
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if version == ProtocolVersion::V311 && !connect.clean_start {
            // [MQTT-3.1.3-8]: a persistent session needs a client id.
            return Err(Refusal::new(
                version,
                rc::CLIENT_IDENTIFIER_NOT_VALID,
                "persistent session without a client id",
            ));
        }
        let generated = format!("warren-{:024x}", rand::random::<u128>() >> 32);
        assigned = Some(generated.clone());
        generated
    } else {
        connect.client_id.clone()
    };

    let id = shared.core.next_connection_id();
    let kick = login.registration.stats().kick.clone();
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
    if let Err(error) = codec.encode(&connack, &mut out) {
        return Err(Refusal::new(
            version,
            rc::UNSPECIFIED_ERROR,
            format!("CONNACK not encodable: {error}"),
        ));
    }
    tracing::info!(%peer, user = %user, vhost = %vhost.name, client_id = %client_id, protocol = ?version, transport = login.transport, connection = id.0, "connection opened");
    login.registration.set_protocol(match version {
        ProtocolVersion::V311 => crate::stats::Protocol::Mqtt311,
        ProtocolVersion::V5 => crate::stats::Protocol::Mqtt50,
    });
    login
        .registration
        .stats()
        .set_identity(crate::stats::ConnectionIdentity {
            user: user.clone(),
            vhost: vhost.name.clone(),
            connection: id.0,
            client: client_id.clone(),
        });
    let client_receive_maximum = connect
        .properties
        .receive_maximum
        .unwrap_or(u16::MAX)
        .clamp(1, settings.max_inflight);
    let mut connection = Box::new(MqttConnection {
        id,
        out,
        codec,
        version,
        vhost,
        access: None,
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
        registration: login.registration,
    });
    connection.resume_session();
    connection.note_session();
    Ok(connection)
}

/// The queue of a session, named as RabbitMQ names it.
pub(crate) fn session_queue_name(client_id: &str, persistent: bool) -> String {
    if persistent {
        format!("mqtt-subscription-{client_id}qos1")
    } else {
        format!("mqtt-subscription-{client_id}qos0")
    }
}

impl MqttConnection {
    /// The user's permissions in the vhost (built on first use).
    pub(super) fn access(&mut self) -> &mut crate::auth::AccessCheck {
        let (registration, shared, vhost, client_id) = (
            &self.registration,
            &self.shared,
            &self.vhost,
            &self.client_id,
        );
        self.access.get_or_insert_with(|| {
            let user = registration
                .stats()
                .identity()
                .map(|identity| identity.user)
                .unwrap_or_default();
            Box::new(crate::auth::AccessCheck::new(
                shared.core.users().clone(),
                &user,
                &vhost.name,
                client_id,
            ))
        })
    }

    /// Whether the user may publish to `topic` (write on the MQTT exchange, and its topic
    /// permission).
    pub(super) fn may_publish(&mut self, topic: &str) -> Result<(), crate::auth::AccessRefused> {
        self.may(crate::auth::Access::Write, topic)
    }

    /// Whether the user may subscribe with `filter` (read on the MQTT exchange, and its
    /// topic permission on the filter as a binding key).
    pub(super) fn may_subscribe(&mut self, filter: &str) -> Result<(), crate::auth::AccessRefused> {
        self.may(crate::auth::Access::Read, filter)
    }

    fn may(
        &mut self,
        access: crate::auth::Access,
        topic: &str,
    ) -> Result<(), crate::auth::AccessRefused> {
        self.access();
        let exchange = &self.shared.settings.exchange;
        let Some(check) = self.access.as_deref_mut() else {
            return Ok(());
        };
        check.check(access, crate::auth::Resource::Exchange, exchange)?;
        if check.has_topic_permissions() {
            check.check_topic(access, exchange, &topic_to_routing_key::<String>(topic))?;
        }
        Ok(())
    }

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
            // The session may have been made by another user with this client id, or the
            // permissions changed since: a subscription the user may not have is dropped.
            if let Err(refused) = self.may_subscribe(&subscription.filter) {
                tracing::warn!(client_id = %self.client_id, %refused, filter = %full, "resumed subscription dropped");
                self.session.subscriptions.remove(&full);
                if subscription.group.is_none() {
                    if let Ok(queue) = self.ensure_session_queue() {
                        let _ = self.vhost.unbind_queue(
                            &queue.name,
                            &self.shared.settings.exchange,
                            &topic_to_routing_key::<String>(&subscription.filter),
                            crate::core::Table::default(),
                            self.id,
                        );
                    }
                }
                continue;
            }
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

    fn process_input(&mut self, input: &mut BytesMut) -> Result<(), Closing> {
        // The driver writes the previous burst's output before reading this one.
        self.start_input_burst();
        loop {
            match self.codec.decode(input) {
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

    /// Tells a v5 client why the server ends the connection (DISCONNECT with a reason).
    fn say_goodbye(&mut self, closing: &Closing) {
        if self.v5() && closing.reason != rc::SUCCESS && closing.reason != rc::UNSPECIFIED_ERROR {
            self.send(Packet::Disconnect(Disconnect {
                reason: closing.reason,
                ..Disconnect::default()
            }));
        }
    }

    /// Ends the session side of the connection (the socket is closed already): returns
    /// unacknowledged deliveries to their queues, publishes the will if due (now or after
    /// its delay), and hands the session back or schedules its expiry.
    fn end(mut self: Box<Self>, closing: Closing) {
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

impl Session for MqttConnection {
    type Close = Closing;

    fn handle_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), Closing> {
        self.last_read = now;
        self.process_input(input)
    }

    fn events(&mut self) -> Option<&mut ConsumerEvents> {
        self.delivering
            .as_mut()
            .map(|delivering| &mut delivering.events)
    }

    fn handle_event(&mut self, event: ConsumerEvent) {
        MqttConnection::handle_event(self, event);
    }

    fn deadline(&self) -> Option<Instant> {
        let keep_alive = Duration::from_secs(self.keep_alive.into());
        (self.keep_alive > 0).then(|| self.last_read + keep_alive + keep_alive / 2)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Closing> {
        // [MQTT-3.1.2-24]: 1.5 times the keepalive without a packet.
        match self.deadline() {
            Some(at) if at <= now => Err(Closing::new(rc::KEEP_ALIVE_TIMEOUT, "keepalive timeout")),
            _ => Ok(()),
        }
    }

    fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    fn written(&mut self, _now: Instant) {}

    fn release_window(&mut self) {
        if let Some(delivering) = self.delivering.as_mut() {
            delivering.window_grants.release();
        }
    }

    fn read_gate(&mut self) -> ReadGate {
        // Only publishers are held back, as in RabbitMQ: a subscriber must keep reading its
        // PUBACKs so queues drain while the alarm is on.
        if self.publishing.is_some() && self.shared.core.resource_alarm().is_some() {
            return ReadGate::Blocked;
        }
        let flow = match self.publishing.as_mut() {
            Some(publishing) => crate::listener::current_flow(&mut publishing.flow),
            None => None,
        };
        match flow {
            Some(flow) => ReadGate::Paused(flow),
            None => ReadGate::Open,
        }
    }

    fn awaits_sync(&self) -> bool {
        self.sync_wait
            .as_ref()
            .is_some_and(|wait| !wait.acks.is_empty())
    }

    fn release_synced(&mut self, ticket: Ticket) {
        MqttConnection::release_synced(self, ticket);
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn store(&self) -> Option<Arc<crate::store::Store>> {
        self.shared.core.store().cloned()
    }
}

/// The session's timers (keep-alive, will delay, session expiry) with a controlled clock:
/// sessions are opened without a socket, and tokio's paused clock stands in for real time.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use warren_mqtt::{ConnectProperties, QoS};

    use super::*;
    use crate::core::{QueueDeclare, Table};

    fn shared() -> Arc<Shared> {
        let core = crate::core::Core::new(1 << 30, None);
        let mqtt = super::super::Mqtt::new(
            core,
            super::super::Settings::from_config(&crate::config::Config::default()),
            tokio_util::sync::CancellationToken::new(),
            tokio_util::task::TaskTracker::new(),
            crate::stats::Registry::new(),
        );
        mqtt.shared()
    }

    fn connect_v5(client_id: &str, keep_alive: u16, session_expiry: u32) -> Connect {
        Connect {
            protocol: ProtocolVersion::V5,
            client_id: client_id.into(),
            clean_start: false,
            keep_alive,
            username: None,
            password: None,
            will: None,
            properties: ConnectProperties {
                session_expiry_interval: Some(session_expiry),
                ..ConnectProperties::default()
            },
        }
    }

    async fn open(shared: &Arc<Shared>, connect: Connect) -> Box<MqttConnection> {
        let login = Login {
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            certificate_name: None,
            transport: "test",
            registration: crate::stats::Registry::new().open_connection(
                crate::stats::Protocol::Mqtt311,
                "tcp",
                SocketAddr::from(([127, 0, 0, 1], 1)),
                None,
            ),
        };
        // The CONNECT goes through the codecs, as from a socket: the server's codec learns
        // the protocol version from it.
        let mut wire = BytesMut::new();
        Codec::new_client(connect.protocol, 1 << 20)
            .encode(&Packet::Connect(connect), &mut wire)
            .unwrap();
        let mut codec = Codec::new(1 << 20);
        let Ok(Some(Packet::Connect(connect))) = codec.decode(&mut wire) else {
            panic!("CONNECT does not decode");
        };
        match accept_connect(codec, connect, login, shared.clone()).await {
            Ok(connection) => connection,
            Err(refusal) => panic!("CONNECT refused: {}", refusal.log),
        }
    }

    /// [MQTT-3.1.2-24]: silence for one and a half times the keep-alive ends the connection.
    #[tokio::test(start_paused = true)]
    async fn keep_alive_allows_one_and_a_half_intervals_of_silence() {
        let shared = shared();
        let mut connection = open(&shared, connect_v5("unit-keepalive", 10, 0)).await;
        let connected = Instant::now();
        assert_eq!(
            connection.deadline(),
            Some(connected + Duration::from_secs(15))
        );
        assert!(connection
            .handle_timeout(connected + Duration::from_millis(14_999))
            .is_ok());
        // A PINGREQ at 14 s moves the deadline to 29 s.
        let mut ping = BytesMut::from(&[0xC0u8, 0x00][..]);
        let pinged = connected + Duration::from_secs(14);
        assert!(connection.handle_input(&mut ping, pinged).is_ok());
        assert_eq!(
            connection.deadline(),
            Some(pinged + Duration::from_secs(15))
        );
        assert!(connection
            .handle_timeout(connected + Duration::from_secs(20))
            .is_ok());
        match connection.handle_timeout(pinged + Duration::from_secs(15)) {
            Err(closing) => assert_eq!(closing.reason, rc::KEEP_ALIVE_TIMEOUT),
            Ok(()) => panic!("a client silent for 1.5 x keep-alive is kept"),
        }
        // Keep-alive 0: no deadline at all.
        let idle = open(&shared, connect_v5("unit-keepalive-0", 0, 0)).await;
        assert_eq!(idle.deadline(), None);
    }

    /// MQTT 5.0 §3.1.3.2.2: the will is published Will Delay Interval after the connection
    /// ends, not before.
    #[tokio::test(start_paused = true)]
    async fn will_is_published_after_its_delay() {
        let shared = shared();
        let vhost = shared.core.vhost("/").unwrap();
        let watcher = ConnectionId(0);
        vhost
            .declare_queue(
                QueueDeclare {
                    name: "unit-will-watch".into(),
                    ..QueueDeclare::default()
                },
                watcher,
            )
            .unwrap();
        vhost
            .bind_queue(
                "unit-will-watch",
                "amq.topic",
                "wills.unit",
                Table::default(),
                watcher,
            )
            .unwrap();
        let watch = vhost.queue("unit-will-watch", watcher).unwrap();
        let mut connect = connect_v5("unit-will", 0, 60);
        connect.will = Some(Will {
            topic: "wills/unit".into(),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            delay_interval: Some(5),
        });
        let connection = open(&shared, connect).await;
        connection.end(Closing::new(rc::UNSPECIFIED_ERROR, "socket lost"));
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        assert_eq!(watch.counts().ready, 0, "will published before its delay");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            watch.counts().ready,
            1,
            "will not published after its delay"
        );
    }

    /// MQTT 5.0 §3.1.2.11.2: a dormant session lives for its Session Expiry Interval, then
    /// it is gone.
    #[tokio::test(start_paused = true)]
    async fn dormant_session_expires_after_its_interval() {
        let shared = shared();
        let connection = open(&shared, connect_v5("unit-expiry", 0, 10)).await;
        let generation = connection.generation;
        connection.end(Closing::new(rc::UNSPECIFIED_ERROR, "socket lost"));
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert!(
            shared.sessions.is_dormant("/", "unit-expiry", generation),
            "session ended before its expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !shared.sessions.is_dormant("/", "unit-expiry", generation),
            "session outlived its expiry"
        );
    }
}
