//! The listener layer: everything between a listening socket and a protocol session,
//! written once for both protocols and every transport.
//!
//! - [`serve`]: the accept loop (connection limit, transport handshake under a deadline:
//!   TLS, WebSocket upgrade) handing each [`Accepted`] connection to a protocol.
//! - `stream`: the [`Stream`] a session's bytes travel over (TCP, TLS, WebSocket, WSS).
//! - `driver`: the socket loop ([`Link::run`]) that feeds a protocol [`Session`] its input,
//!   consumer events and timeouts, flushes its output once per burst, pauses reading for
//!   flow control and alarms, and releases acknowledgements once the store has synced.
//! - `websocket`: the WebSocket upgrade for MQTT (path `/ws`, subprotocol `mqtt`).
//!
//! Sessions (`amqp::connection`, `mqtt::connection`) hold no socket: they take decoded
//! input and the current time and produce output, so their timers are unit-tested with a
//! controlled clock.

mod driver;
mod stream;
mod websocket;

use crate::stats::{Protocol, Registration, Registry};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use driver::{
    current_flow, start_flow, Ended, Flow, Link, Opened, ReadGate, Session, ShutdownOrKick,
};
pub(crate) use stream::Stream;

use crate::tls::TlsAcceptor;

/// Smallest read buffer: what an idle connection's next packet is read into.
pub(crate) const MIN_READ: usize = 2 * 1024;

/// How a listener's connections carry their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket over TCP (MQTT only).
    WebSocket,
    /// WebSocket over TLS (MQTT only).
    SecureWebSocket,
}

impl Transport {
    /// Whether the transport runs TLS.
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::SecureWebSocket)
    }

    /// The `transport` label of the connection metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::WebSocket => "ws",
            Transport::SecureWebSocket => "wss",
        }
    }
}

/// A connection whose transport handshake is done, handed to a protocol.
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    pub(crate) peer: SocketAddr,
    /// The subject CN of the client's certificate, when TLS verified one (certificate login).
    pub(crate) certificate_name: Option<String>,
    /// Counts the connection against the broker's limit while it lives.
    pub(crate) _slot: ConnectionSlot,
    /// The connection's entry in the metrics registry, counted while it lives.
    pub(crate) registration: Registration,
}

/// Limits shared by every listener.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Connections open at most, over all listeners.
    pub(crate) max_connections: usize,
    open: AtomicUsize,
    /// How long a client may take for the transport handshake (TLS, WebSocket upgrade);
    /// the protocol handshake (AMQP up to connection.open, MQTT CONNECT) then has as long
    /// again.
    pub(crate) handshake_timeout: Duration,
}

impl Limits {
    /// Limits for a broker.
    pub(crate) fn new(max_connections: usize, handshake_timeout: Duration) -> Arc<Limits> {
        Arc::new(Limits {
            max_connections,
            open: AtomicUsize::new(0),
            handshake_timeout,
        })
    }

    fn take_slot(self: &Arc<Limits>) -> Option<ConnectionSlot> {
        let previous = self.open.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(self.clone());
        (previous < self.max_connections).then_some(slot)
    }
}

/// One open connection's place under [`Limits::max_connections`]; freed on drop.
pub(crate) struct ConnectionSlot(Arc<Limits>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every listener needs to run.
pub(crate) struct ListenerContext {
    /// Which listener, for logs ("AMQPS", "MQTT over WebSocket", ...).
    pub(crate) name: &'static str,
    pub(crate) transport: Transport,
    /// The TLS configuration (reloadable) for TLS transports.
    pub(crate) tls: Option<Arc<TlsAcceptor>>,
    pub(crate) limits: Arc<Limits>,
    /// Largest WebSocket message a client may send (WebSocket transports).
    pub(crate) websocket_max_message: usize,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Where connections are registered for the metrics.
    pub(crate) stats: Arc<Registry>,
    /// The protocol the listener speaks, until a handshake says which version.
    pub(crate) protocol: Protocol,
}

impl ListenerContext {
    /// Registers a connection whose transport handshake is done.
    fn register(&self, peer: SocketAddr, local: Option<SocketAddr>) -> Registration {
        self.stats
            .open_connection(self.protocol, self.transport.label(), peer, local)
    }
}

/// Accepts connections on `listener` until shutdown; each runs the transport handshake and
/// then `session` as its own tracked task.
pub(crate) async fn serve<F, Fut>(listener: TcpListener, context: ListenerContext, session: F)
where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let session = Arc::new(session);
    let context = Arc::new(context);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = context.shutdown.cancelled() => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(listener = context.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = context.limits.take_slot() else {
            tracing::warn!(listener = context.name, %peer, limit = context.limits.max_connections, "connection refused: connection limit reached");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        if context.transport == Transport::Tcp {
            // The fast path: no handshake task, no boxing.
            let accepted = Accepted {
                stream: Stream::Tcp(socket),
                peer,
                certificate_name: None,
                _slot: slot,
                registration: context.register(peer, local),
            };
            context.tasks.spawn(session(accepted));
            continue;
        }
        let context2 = context.clone();
        let session = session.clone();
        context.tasks.spawn(async move {
            let handshake = Box::pin(handshake(socket, &context2));
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(context2.limits.handshake_timeout, handshake) => outcome,
                _ = context2.shutdown.cancelled() => return,
            };
            match outcome {
                Ok(Ok((stream, certificate_name))) => {
                    let accepted = Accepted {
                        stream,
                        peer,
                        certificate_name,
                        _slot: slot,
                        registration: context2.register(peer, local),
                    };
                    session(accepted).await;
                }
                Ok(Err(error)) => {
                    tracing::info!(listener = context2.name, %peer, %error, "transport handshake failed");
                }
                Err(_) => {
                    tracing::warn!(listener = context2.name, %peer, "transport handshake timed out");
                }
            }
        });
    }
}

/// Runs the TLS and WebSocket handshakes a transport needs.
async fn handshake(
    socket: TcpStream,
    context: &ListenerContext,
) -> Result<(Stream, Option<String>), HandshakeError> {
    match context.transport {
        Transport::Tcp => Ok((Stream::Tcp(socket), None)),
        Transport::WebSocket => {
            let ws = websocket::accept(socket, context.websocket_max_message).await?;
            Ok((Stream::WebSocket(stream::Buffered::new(ws)), None))
        }
        Transport::Tls | Transport::SecureWebSocket => {
            let acceptor = context.tls.as_ref().ok_or(HandshakeError::NoTls)?;
            let tls = acceptor.accept(socket).await?;
            let certificate_name = crate::tls::certificate_name(tls.get_ref().1);
            if context.transport == Transport::Tls {
                Ok((Stream::Tls(stream::Buffered::new(tls)), certificate_name))
            } else {
                let ws = websocket::accept(tls, context.websocket_max_message).await?;
                Ok((
                    Stream::SecureWebSocket(stream::Buffered::new(ws)),
                    certificate_name,
                ))
            }
        }
    }
}

/// Why a transport handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// TLS failed (bad or missing client certificate, protocol error, socket closed).
    #[error("TLS: {0}")]
    Tls(#[from] std::io::Error),
    /// The WebSocket upgrade failed (wrong path, not a WebSocket request, ...).
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// A TLS listener without TLS settings (not reachable: the broker refuses to start one).
    #[error("no TLS configuration")]
    NoTls,
}

/// Frees an empty read buffer. Readiness left over from the last read (tokio clears it only
/// when a read finds nothing) makes the next read reserve a buffer and find nothing; an idle
/// connection must not keep that buffer while it waits.
fn release_if_empty(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > 0 {
        *buffer = BytesMut::new();
    }
}

/// How much to read at once, adapted to the connection's traffic: it doubles while reads
/// fill the buffer (a busy publisher soon reads large bursts) and halves when they come in
/// small, so idle and chatty connections never hold large buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadSize {
    size: usize,
    max: usize,
}

impl ReadSize {
    /// Starts at [`MIN_READ`], growing up to `max`.
    pub(crate) fn new(max: usize) -> ReadSize {
        ReadSize {
            size: MIN_READ,
            max: max.max(MIN_READ),
        }
    }

    /// Makes room for the next read, allocating only now.
    fn reserve(&self, buffer: &mut BytesMut) {
        let spare = buffer.capacity() - buffer.len();
        if spare < self.size / 2 {
            buffer.reserve(self.size);
        }
    }

    /// Adapts the size to a read of `read` bytes into `room` bytes of space.
    fn adapt(&mut self, read: usize, room: usize) {
        if read == room {
            self.size = (self.size * 2).min(self.max);
        } else if read < self.size / 4 {
            self.size = (self.size / 2).max(MIN_READ);
        }
    }

    /// Reads what a readable socket holds into `buffer`. Returns `Ok(None)` when the
    /// readiness was spurious, `Ok(Some(0))` at end of stream.
    fn try_read(
        &mut self,
        stream: &TcpStream,
        buffer: &mut BytesMut,
    ) -> std::io::Result<Option<usize>> {
        self.reserve(buffer);
        let room = buffer.capacity() - buffer.len();
        match stream.try_read_buf(buffer) {
            Ok(read) => {
                self.adapt(read, room);
                Ok(Some(read))
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                release_if_empty(buffer);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}
