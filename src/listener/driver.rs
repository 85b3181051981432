//! The socket loop every protocol session runs in, and the pieces of it both protocols
//! share: read sizing, the flow pause for congested queues, the memory alarm pause, the
//! "acknowledge only after fsync" gate, timers and shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Accepted, ConnectionSlot, ReadSize, Stream};
use crate::core::{ConsumerEvent, ConsumerEvents, Queue};
use crate::stats::{ConnectionStats, Registration};
use crate::store::{Store, Ticket};

/// Consumer events handled per wake-up before flushing, so one busy queue cannot starve reads.
const EVENT_BATCH: usize = 512;

/// How often a publisher blocked by a resource alarm checks whether it cleared.
const ALARM_RECHECK: Duration = Duration::from_millis(50);

/// The longest a publisher waits for one congested queue before reading again, so a cycle
/// of connections waiting on each other's consumers cannot stall for good.
pub(crate) const FLOW_MAX_PAUSE: Duration = Duration::from_millis(200);

/// A publisher's pause for a congested queue (see [`crate::core::Queue::congested`]): the
/// queue, and until when reading waits for it to drain. RabbitMQ shows such a connection
/// in state "flow".
pub(crate) type Flow = Option<(Arc<Queue>, Instant)>;

/// Whether the socket loop may read the client's input now.
pub(crate) enum ReadGate {
    /// Read.
    Open,
    /// Wait for a congested queue to drain (or the pause's deadline).
    Paused((Arc<Queue>, Instant)),
    /// A resource alarm (memory, disk) is on: do not read this publisher until it clears.
    Blocked,
}

/// A protocol's connection state machine, apart from its socket: it takes decoded input,
/// consumer events and the current time, and produces output into a buffer the loop
/// writes once per burst.
pub(crate) trait Session {
    /// Why the session wants the connection closed (its farewell is already in the output).
    type Close;

    /// Handles every complete packet or frame in `input`, consuming them.
    fn handle_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), Self::Close>;
    /// Where this connection's consumers deliver; None while it consumes nothing.
    fn events(&mut self) -> Option<&mut ConsumerEvents>;
    /// Handles one delivery or cancellation from the core.
    fn handle_event(&mut self, event: ConsumerEvent);
    /// When [`Session::handle_timeout`] wants to run next (heartbeat, keep-alive).
    fn deadline(&self) -> Option<Instant>;
    /// Runs the session's timers; called at or after [`Session::deadline`].
    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Close>;
    /// Output produced and not yet written.
    fn output(&mut self) -> &mut BytesMut;
    /// The output was written at `now`.
    fn written(&mut self, now: Instant);
    /// Hands the delivery window of what was written (or dropped without output: expired,
    /// filtered by no-local) back to the queues; called on every turn of the loop.
    fn release_window(&mut self);
    /// Whether input may be read now.
    fn read_gate(&mut self) -> ReadGate;
    /// Whether acknowledgements wait for the store to sync.
    fn awaits_sync(&self) -> bool;
    /// The store has synced up to `ticket`: release what waited for it.
    fn release_synced(&mut self, ticket: Ticket);
    /// The session ended normally (close-ok, DISCONNECT): stop after flushing.
    fn finished(&self) -> bool;
    /// The store acknowledgements wait for.
    fn store(&self) -> Option<Arc<Store>>;
}

/// What stops a connection from outside: broker shutdown, MQTT client take-over.
pub(crate) trait StopSignal {
    /// Completes once the connection must stop.
    fn stopped(&self) -> impl Future<Output = ()> + Send + '_;
}

impl StopSignal for CancellationToken {
    fn stopped(&self) -> impl Future<Output = ()> + Send + '_ {
        self.cancelled()
    }
}

impl StopSignal for crate::stats::Kick {
    fn stopped(&self) -> impl Future<Output = ()> + Send + '_ {
        self.kicked()
    }
}

/// The broker's shutdown or the connection's kick, whichever comes first.
pub(crate) struct ShutdownOrKick<'a>(
    pub(crate) &'a CancellationToken,
    pub(crate) &'a crate::stats::Kick,
);

impl StopSignal for ShutdownOrKick<'_> {
    async fn stopped(&self) {
        tokio::select! {
            _ = self.0.cancelled() => {}
            _ = self.1.kicked() => {}
        }
    }
}

/// Why [`Link::run`] returned.
pub(crate) enum Ended<C> {
    /// The session asked to close the connection.
    Closed(C),
    /// The session ended normally.
    Finished,
    /// The client closed the socket, or reading or writing failed.
    Lost(String),
    /// The stop signal fired.
    Stopped,
}

/// What [`Link::open`] hands the protocol besides the link.
pub(crate) struct Opened {
    /// The client's address.
    pub(crate) peer: std::net::SocketAddr,
    /// The subject CN of the client's certificate, when TLS verified one.
    pub(crate) certificate_name: Option<String>,
    /// The connection's metrics entry; unregisters it when dropped.
    pub(crate) registration: Registration,
}

/// A connection's socket side: the stream and its read buffer.
pub(crate) struct Link {
    pub(crate) stream: Stream,
    /// Input read and not yet consumed; released between bursts.
    pub(crate) read_buf: BytesMut,
    read_size: ReadSize,
    /// The connection's place under the connection limit, held while the link lives.
    _slot: ConnectionSlot,
    /// Where the link counts bytes and socket calls.
    stats: Arc<ConnectionStats>,
}

impl Link {
    /// The link of an accepted connection, whose reads grow up to `read_max` bytes; also
    /// returns the peer and the client certificate's CN. Only what a live connection needs
    /// stays with it, not the whole accepted record.
    pub(crate) fn open(accepted: Accepted, read_max: usize) -> (Link, Opened) {
        let Accepted {
            stream,
            peer,
            certificate_name,
            _slot,
            registration,
        } = accepted;
        let link = Link {
            stream,
            read_buf: BytesMut::new(),
            read_size: ReadSize::new(read_max),
            _slot,
            stats: registration.stats().clone(),
        };
        let opened = Opened {
            peer,
            certificate_name,
            registration,
        };
        (link, opened)
    }

    /// Reads more input during a handshake; `Ok(0)` at end of stream.
    pub(crate) async fn fill(&mut self) -> std::io::Result<usize> {
        let read = self
            .stream
            .read_some(&mut self.read_buf, &mut self.read_size)
            .await?;
        self.count_read(read);
        Ok(read)
    }

    /// Writes `output` (leaving it empty).
    pub(crate) async fn write(&mut self, output: &mut BytesMut) -> std::io::Result<()> {
        if output.is_empty() {
            return Ok(());
        }
        self.stats.bytes_out.add(output.len() as u64);
        self.stats.writes.bump();
        self.stream.write_out(output).await
    }

    fn count_read(&self, read: usize) {
        if read > 0 {
            self.stats.bytes_in.add(read as u64);
            self.stats.reads.bump();
        }
    }

    /// Runs `session` over this link until it ends, the client goes, or `stop` fires.
    pub(crate) async fn run<S: Session>(
        &mut self,
        session: &mut S,
        stop: &impl StopSignal,
    ) -> Ended<S::Close> {
        if self.read_buf.is_empty() {
            // Idle connections keep no handshake buffer.
            self.read_buf = BytesMut::new();
        } else {
            // Packets that came with the handshake's last read (MQTT allows a SUBSCRIBE
            // right behind CONNECT): the socket may have nothing more to wake us.
            if let Err(close) = session.handle_input(&mut self.read_buf, Instant::now()) {
                return Ended::Closed(close);
            }
        }
        let mut synced: Option<watch::Receiver<Ticket>> = None;
        // One timer for the session's deadlines and the alarm re-check, re-armed only when a
        // deadline comes earlier than the one it waits for: firing early is harmless (the
        // session checks the real time), and busy connections do not touch the timer wheel
        // per burst. It lives in the task (no allocation) and is registered only once armed.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let gate = session.read_gate();
            let waiting_for_sync = session.awaits_sync();
            if waiting_for_sync {
                if synced.is_none() {
                    synced = session.store().map(|store| store.synced());
                }
                if let Some(synced) = synced.as_mut() {
                    let ticket = *synced.borrow_and_update();
                    session.release_synced(ticket);
                }
            }
            if !session.output().is_empty() {
                self.stats.bytes_out.add(session.output().len() as u64);
                self.stats.writes.bump();
                if let Err(error) = self.stream.write_out(session.output()).await {
                    return Ended::Lost(format!("write failed: {error}"));
                }
                session.written(Instant::now());
            }
            session.release_window();
            if session.finished() {
                return Ended::Finished;
            }
            let (can_read, flow, blocked) = match gate {
                ReadGate::Open => (true, None, false),
                ReadGate::Paused(flow) => (false, Some(flow), false),
                ReadGate::Blocked => (false, None, true),
            };
            let alarm = blocked.then(|| Instant::now() + ALARM_RECHECK);
            let wake_at = match (session.deadline(), alarm) {
                (Some(deadline), Some(alarm)) => Some(deadline.min(alarm)),
                (deadline, alarm) => deadline.or(alarm),
            };
            match (wake_at, armed) {
                (None, _) => armed = None,
                (Some(at), Some(current)) if at >= current => {}
                (Some(at), _) => {
                    timer.as_mut().reset(at);
                    armed = Some(at);
                }
            }
            let synced_wait = synced.as_mut().filter(|_| waiting_for_sync);
            let stream = &mut self.stream;
            let read_buf = &mut self.read_buf;
            let read_size = &mut self.read_size;
            let events = session.events();
            tokio::select! {
                biased;
                _ = stop.stopped() => return Ended::Stopped,
                read = std::future::poll_fn(|context| stream.poll_read_some(context, read_buf, read_size)), if can_read => {
                    match read {
                        Ok(0) => return Ended::Lost("client closed the socket".into()),
                        Ok(read) => {
                            self.stats.bytes_in.add(read as u64);
                            self.stats.reads.bump();
                            // Socket readiness does not count against tokio's cooperative
                            // budget, and a consumer woken by this burst waits in this
                            // worker's LIFO slot: yield after each burst so a flooding
                            // publisher cannot starve the consumers it feeds.
                            tokio::task::yield_now().await;
                            if let Err(close) = session.handle_input(&mut self.read_buf, Instant::now()) {
                                return Ended::Closed(close);
                            }
                            if self.read_buf.is_empty() {
                                // Idle connections keep no read buffer.
                                self.read_buf = BytesMut::new();
                            }
                        }
                        Err(error) => return Ended::Lost(format!("read failed: {error}")),
                    }
                }
                event = recv_event(events) => {
                    if let Some(event) = event {
                        session.handle_event(event);
                        for _ in 1..EVENT_BATCH {
                            match session.events().and_then(|events| events.try_recv()) {
                                Some(event) => session.handle_event(event),
                                None => break,
                            }
                        }
                    }
                }
                _ = crate::store::synced_changed(synced_wait) => {}
                _ = flow_wait(flow.clone()), if flow.is_some() => {}
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    if let Err(close) = session.handle_timeout(Instant::now()) {
                        return Ended::Closed(close);
                    }
                }
            }
        }
    }
}

/// The next consumer event; never resolves while the connection has no consumer.
async fn recv_event(events: Option<&mut ConsumerEvents>) -> Option<ConsumerEvent> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts a pause for the queue the last publish found congested (taken from `congested`),
/// unless one is already running or `consumes_from` says this connection consumes from that
/// queue itself (its acks must get through). Returns whether a pause started.
pub(crate) fn start_flow(
    flow: &mut Flow,
    congested: &mut Option<Arc<Queue>>,
    consumes_from: impl FnOnce(&Queue) -> bool,
) -> bool {
    let Some(queue) = congested.take() else {
        return false;
    };
    if flow.is_none() && !consumes_from(&queue) {
        *flow = Some((queue, Instant::now() + FLOW_MAX_PAUSE));
        return true;
    }
    false
}

/// The pause still holding, if any (a clone to wait on); ends it once the queue drained or
/// the deadline passed.
pub(crate) fn current_flow(flow: &mut Flow) -> Flow {
    let (queue, until) = flow.as_ref()?;
    if !queue.congested() || Instant::now() >= *until {
        *flow = None;
        return None;
    }
    Some((queue.clone(), *until))
}

/// Waits for a paused publisher's queue to drain, or for the pause's deadline.
async fn flow_wait(flow: Option<(Arc<Queue>, Instant)>) {
    if let Some((queue, until)) = flow {
        // Boxed: this future sits in every connection's idle select, and the timer and the
        // wait would otherwise be paid for by idle connections that never pause.
        let _ = Box::pin(tokio::time::timeout_at(until, async move {
            queue.drained().await
        }))
        .await;
    }
}
