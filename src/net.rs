//! Socket helpers shared by the listeners.

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Smallest read buffer: what an idle connection's next packet is read into.
pub(crate) const MIN_READ: usize = 2 * 1024;

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
}

/// Reads what a readable socket holds into `buffer`, allocating only now: an idle connection
/// waits for readiness with no read buffer allocated (SPEC §10). Returns `Ok(None)` when the
/// readiness was spurious, `Ok(Some(0))` at end of stream.
pub(crate) fn read_ready(
    stream: &TcpStream,
    buffer: &mut BytesMut,
    size: &mut ReadSize,
) -> io::Result<Option<usize>> {
    let spare = buffer.capacity() - buffer.len();
    if spare < size.size / 2 {
        buffer.reserve(size.size);
    }
    let room = buffer.capacity() - buffer.len();
    match stream.try_read_buf(buffer) {
        Ok(read) => {
            if read == room {
                size.size = (size.size * 2).min(size.max);
            } else if read < size.size / 4 {
                size.size = (size.size / 2).max(MIN_READ);
            }
            Ok(Some(read))
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(error) => Err(error),
    }
}

/// The longest a publisher waits for one congested queue before reading again, so a cycle
/// of connections waiting on each other's consumers cannot stall for good.
pub(crate) const FLOW_MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// A publisher's pause for a congested queue (see [`crate::core::Queue::congested`]): the
/// queue, and until when reading waits for it to drain. RabbitMQ shows such a connection
/// in state "flow".
pub(crate) type Flow = Option<(std::sync::Arc<crate::core::Queue>, tokio::time::Instant)>;

/// Starts a pause for the queue the last publish found congested (taken from `congested`),
/// unless one is already running or `consumes_from` says this connection consumes from that
/// queue itself (its acks must get through).
pub(crate) fn start_flow(
    flow: &mut Flow,
    congested: &mut Option<std::sync::Arc<crate::core::Queue>>,
    consumes_from: impl FnOnce(&crate::core::Queue) -> bool,
) {
    let Some(queue) = congested.take() else {
        return;
    };
    if flow.is_none() && !consumes_from(&queue) {
        *flow = Some((queue, tokio::time::Instant::now() + FLOW_MAX_PAUSE));
    }
}

/// The pause still holding, if any (a clone to wait on); ends it once the queue drained or
/// the deadline passed.
pub(crate) fn current_flow(flow: &mut Flow) -> Flow {
    let (queue, until) = flow.as_ref()?;
    if !queue.congested() || tokio::time::Instant::now() >= *until {
        *flow = None;
        return None;
    }
    Some((queue.clone(), *until))
}

/// Waits for a paused publisher's queue to drain, or for the pause's deadline.
pub(crate) async fn flow_wait(flow: Flow) {
    if let Some((queue, until)) = flow {
        // Boxed: this future sits in every connection's idle select, and the timer and the
        // wait would otherwise be paid for by idle connections that never pause.
        let _ = Box::pin(tokio::time::timeout_at(until, async move {
            queue.drained().await
        }))
        .await;
    }
}
