//! The byte stream under a protocol session: plain TCP, TLS, or WebSocket (over either).
//!
//! Every transport is read the same way: wait until the socket is readable, and only then
//! reserve a read buffer, so an idle connection holds no read memory. TLS and
//! WebSocket layers may hold input already taken off the socket; a read that may have left
//! some there is followed by another read without waiting for the socket.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ReadSize;

/// One accepted connection's byte stream, whatever the transport.
pub(crate) enum Stream {
    /// Plain TCP: the fast path, read with `try_read` once the socket is readable.
    Tcp(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large, and plain connections must not pay for it).
    Tls(Box<Buffered<TlsStream<TcpStream>>>),
    /// MQTT over WebSocket, over TCP.
    WebSocket(Box<Buffered<WebSocketStream<TcpStream>>>),
    /// MQTT over WebSocket, over TLS.
    SecureWebSocket(Box<Buffered<WebSocketStream<TlsStream<TcpStream>>>>),
}

/// A layered stream and whether its layer may hold input already read off the socket.
pub(crate) struct Buffered<S> {
    pub(crate) inner: S,
    /// True after a read that returned data: the layer may have more decrypted or framed
    /// input than fitted, so the next read tries it before waiting for the socket.
    pending: bool,
}

impl<S> Buffered<S> {
    pub(crate) fn new(inner: S) -> Box<Buffered<S>> {
        Box::new(Buffered {
            inner,
            pending: true,
        })
    }
}

/// The TCP socket at the bottom of a layered stream, for readiness.
trait Socket {
    fn socket(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl Socket for TlsStream<TcpStream> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl<S: Socket + AsyncRead + AsyncWrite + Unpin> Socket for WebSocketStream<S> {
    fn socket(&self) -> &TcpStream {
        self.get_ref().socket()
    }
}

impl Stream {
    /// The transport's name, for logs and (later) the management API.
    pub(crate) fn transport(&self) -> &'static str {
        match self {
            Stream::Tcp(_) => "tcp",
            Stream::Tls(_) => "tls",
            Stream::WebSocket(_) => "ws",
            Stream::SecureWebSocket(_) => "wss",
        }
    }

    /// Reads what the connection has into `buffer`, sized by `size`; `Ok(0)` at end of stream.
    pub(crate) fn poll_read_some(
        &mut self,
        context: &mut Context<'_>,
        buffer: &mut BytesMut,
        size: &mut ReadSize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(stream) => loop {
                ready!(stream.poll_read_ready(context))?;
                match size.try_read(stream, buffer) {
                    Ok(Some(read)) => return Poll::Ready(Ok(read)),
                    Ok(None) => continue,
                    Err(error) => return Poll::Ready(Err(error)),
                }
            },
            Stream::Tls(tls) => poll_read_tls(tls, context, buffer, size),
            Stream::WebSocket(ws) => poll_read_websocket(ws, context, buffer),
            Stream::SecureWebSocket(ws) => poll_read_websocket(ws, context, buffer),
        }
    }

    /// Reads at least one byte (or end of stream: `Ok(0)`).
    pub(crate) async fn read_some(
        &mut self,
        buffer: &mut BytesMut,
        size: &mut ReadSize,
    ) -> io::Result<usize> {
        std::future::poll_fn(|context| self.poll_read_some(context, buffer, size)).await
    }

    /// Writes all of `output` and leaves it empty, with no capacity kept (idle connections
    /// hold no write memory).
    pub(crate) async fn write_out(&mut self, output: &mut BytesMut) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.write_all(output).await?,
            Stream::Tls(tls) => {
                tls.inner.write_all(output).await?;
                tls.inner.flush().await?;
            }
            // One binary frame per burst; a frame may hold several MQTT packets.
            Stream::WebSocket(ws) => send_websocket(&mut ws.inner, output).await?,
            Stream::SecureWebSocket(ws) => send_websocket(&mut ws.inner, output).await?,
        }
        *output = BytesMut::new();
        Ok(())
    }

    /// Closes the sending side (TLS close_notify, WebSocket close frame, TCP FIN).
    pub(crate) async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Tcp(stream) => stream.shutdown().await,
            Stream::Tls(tls) => tls.inner.shutdown().await,
            Stream::WebSocket(ws) => ws.inner.close(None).await.map_err(io::Error::other),
            Stream::SecureWebSocket(ws) => ws.inner.close(None).await.map_err(io::Error::other),
        };
    }
}

fn poll_read_tls(
    tls: &mut Buffered<TlsStream<TcpStream>>,
    context: &mut Context<'_>,
    buffer: &mut BytesMut,
    size: &mut ReadSize,
) -> Poll<io::Result<usize>> {
    if !tls.pending {
        ready!(tls.inner.socket().poll_read_ready(context))?;
    }
    size.reserve(buffer);
    let spare = buffer.spare_capacity_mut();
    let room = spare.len();
    let mut read_buf = ReadBuf::uninit(spare);
    match Pin::new(&mut tls.inner).poll_read(context, &mut read_buf) {
        Poll::Ready(Ok(())) => {
            let read = read_buf.filled().len();
            // SAFETY: `poll_read` initialised the first `read` bytes of the spare capacity.
            unsafe { buffer.set_len(buffer.len() + read) };
            size.adapt(read, room);
            tls.pending = read > 0;
            Poll::Ready(Ok(read))
        }
        Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        Poll::Pending => {
            // Nothing decrypted is left: the socket's readiness (registered by the read
            // that found nothing) wakes the task.
            tls.pending = false;
            super::release_if_empty(buffer);
            Poll::Pending
        }
    }
}

fn poll_read_websocket<S>(
    ws: &mut Buffered<WebSocketStream<S>>,
    context: &mut Context<'_>,
    buffer: &mut BytesMut,
) -> Poll<io::Result<usize>>
where
    S: Socket + AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if !ws.pending {
            ready!(ws.inner.socket().poll_read_ready(context))?;
        }
        match ws.inner.poll_next_unpin(context) {
            Poll::Ready(Some(Ok(Message::Binary(data)))) => {
                ws.pending = true;
                if data.is_empty() {
                    continue;
                }
                buffer.extend_from_slice(&data);
                return Poll::Ready(Ok(data.len()));
            }
            // tungstenite answers pings (and a close) itself.
            Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {
                ws.pending = true;
            }
            Poll::Ready(Some(Ok(Message::Text(_)))) => {
                // MQTT over WebSocket uses binary frames only [MQTT-6.0.0-1].
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "text WebSocket frame (MQTT needs binary frames)",
                )));
            }
            Poll::Ready(Some(Ok(Message::Close(_))) | None) => return Poll::Ready(Ok(0)),
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(io::Error::other(error))),
            Poll::Pending => {
                ws.pending = false;
                return Poll::Pending;
            }
        }
    }
}

/// Largest binary frame sent: a big burst goes out as several frames (MQTT packets may span
/// frames), so clients with frame-size limits can read it.
const WEBSOCKET_FRAME_MAX: usize = 1 << 20;

async fn send_websocket<S>(ws: &mut WebSocketStream<S>, output: &mut BytesMut) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rest = output.split().freeze();
    while rest.len() > WEBSOCKET_FRAME_MAX {
        let frame = Message::Binary(rest.split_to(WEBSOCKET_FRAME_MAX));
        ws.feed(frame).await.map_err(io::Error::other)?;
    }
    ws.send(Message::Binary(rest))
        .await
        .map_err(io::Error::other)
}
