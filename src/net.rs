//! Socket helpers shared by the listeners.

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Reads what a readable socket holds into `buffer`, growing it by `chunk` only now: an idle
/// connection waits for readiness with no read buffer allocated (SPEC §10). Returns
/// `Ok(None)` when the readiness was spurious, `Ok(Some(0))` at end of stream.
pub(crate) fn read_ready(
    stream: &TcpStream,
    buffer: &mut BytesMut,
    chunk: usize,
) -> io::Result<Option<usize>> {
    if buffer.capacity() - buffer.len() < chunk / 4 {
        buffer.reserve(chunk);
    }
    match stream.try_read_buf(buffer) {
        Ok(read) => Ok(Some(read)),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(error) => Err(error),
    }
}
