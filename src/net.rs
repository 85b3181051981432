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
