//! The byte streams under the AMQP and MQTT clients: plain TCP, TLS (`amqps://`, `mqtts://`)
//! and MQTT over WebSocket (`ws://`, `wss://`).
//!
//! Each connection is split into a [`ReadHalf`] and a [`WriteHalf`] so a client's read and
//! write sides can run concurrently. They are enums rather than boxed trait objects so that
//! the `Tcp` arm, the benchmark baseline, stays the exact code it was before TLS existed
//! (tokio's `into_split` halves, `read_buf`, `write_all`): one predictable branch per call.
//! TLS streams are split with `tokio::io::split`; WebSocket streams with the `futures` split
//! of the message stream, each write becoming one binary frame and each binary frame read
//! appended to the client's decode buffer.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How to reach a broker: where, and over what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain TCP (`amqp://`, `mqtt://`).
    Tcp,
    /// TLS over TCP (`amqps://`, `mqtts://`).
    Tls,
    /// WebSocket over TCP (`ws://`), MQTT only.
    Ws,
    /// WebSocket over TLS (`wss://`), MQTT only.
    Wss,
}

impl Transport {
    /// Whether the connection needs a TLS configuration.
    pub(crate) fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }
}

/// Where to connect and how; built from a parsed URI.
pub(crate) struct Endpoint<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) transport: Transport,
    /// The WebSocket request path (`/ws`); ignored for TCP and TLS.
    pub(crate) path: &'a str,
    /// The client TLS configuration (present whenever `transport.is_tls()`).
    pub(crate) tls: Option<&'a Arc<rustls::ClientConfig>>,
    /// The connection will stay idle (idle mode): small WebSocket buffers, as tungstenite's
    /// default 128 KiB read buffer per connection would be 1.3 GB for 10,000 connections.
    pub(crate) idle: bool,
}

/// WebSocket read buffer of an idle connection.
const IDLE_WS_READ_BUFFER: usize = 4096;

/// A TLS client stream over TCP.
type Tls = TlsStream<TcpStream>;
/// The stream a WebSocket runs over (tokio-tungstenite's own `MaybeTlsStream` needs its TLS
/// features, which would pull in a second TLS setup).
pub(crate) enum WsInner {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<Tls>),
}

impl AsyncRead for WsInner {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WsInner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            WsInner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WsInner {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WsInner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WsInner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WsInner::Plain(s) => Pin::new(s).poll_flush(cx),
            WsInner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WsInner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WsInner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
/// A client WebSocket.
type Ws = WebSocketStream<WsInner>;

/// The receiving half of a connection.
pub(crate) enum ReadHalf {
    /// Plain TCP: the existing fast path.
    Tcp(OwnedReadHalf),
    /// TLS (boxed: rustls state is large and most runs are plain TCP).
    Tls(Box<tokio::io::ReadHalf<Tls>>),
    /// WebSocket (plain or over TLS).
    Ws(Box<SplitStream<Ws>>),
}

/// The sending half of a connection.
pub(crate) enum WriteHalf {
    /// Plain TCP: the existing fast path.
    Tcp(OwnedWriteHalf),
    /// TLS.
    Tls(Box<tokio::io::WriteHalf<Tls>>),
    /// WebSocket (plain or over TLS).
    Ws(Box<SplitSink<Ws, Message>>),
}

/// Opens a connection to `at`: TCP connect (with `TCP_NODELAY`), then the TLS handshake
/// and/or the WebSocket upgrade, all within `wait`.
pub(crate) async fn connect(at: &Endpoint<'_>, wait: Duration) -> Result<(ReadHalf, WriteHalf)> {
    let (host, port) = (at.host, at.port);
    let stream = timeout(wait, TcpStream::connect((host, port)))
        .await
        .map_err(|_| anyhow!("connecting to {host}:{port}: timed out"))?
        .with_context(|| format!("connecting to {host}:{port}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    if at.transport == Transport::Tcp {
        let (r, w) = stream.into_split();
        return Ok((ReadHalf::Tcp(r), WriteHalf::Tcp(w)));
    }
    let upgrade = async {
        let inner = if at.transport.is_tls() {
            let config = at
                .tls
                .ok_or_else(|| anyhow!("internal: no TLS configuration"))?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| anyhow!("{host:?} is not a valid TLS server name"))?;
            let tls = TlsConnector::from(config.clone())
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS handshake with {host}:{port}"))?;
            if at.transport == Transport::Tls {
                let (r, w) = tokio::io::split(tls);
                return Ok((ReadHalf::Tls(Box::new(r)), WriteHalf::Tls(Box::new(w))));
            }
            WsInner::Tls(Box::new(tls))
        } else {
            WsInner::Plain(stream)
        };
        let config = at
            .idle
            .then(|| WebSocketConfig::default().read_buffer_size(IDLE_WS_READ_BUFFER));
        let (ws, _) = tokio_tungstenite::client_async_with_config(ws_request(at)?, inner, config)
            .await
            .with_context(|| format!("WebSocket upgrade with {host}:{port}{}", at.path))?;
        let (w, r) = ws.split();
        Ok((ReadHalf::Ws(Box::new(r)), WriteHalf::Ws(Box::new(w))))
    };
    timeout(wait, upgrade)
        .await
        .map_err(|_| anyhow!("TLS/WebSocket handshake with {host}:{port}: timed out"))?
}

/// The upgrade request: `GET <path>` with the `mqtt` subprotocol brokers require.
fn ws_request(
    at: &Endpoint<'_>,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let scheme = if at.transport.is_tls() { "wss" } else { "ws" };
    let host = if at.host.contains(':') {
        format!("[{}]", at.host)
    } else {
        at.host.to_string()
    };
    let mut request = format!("{scheme}://{host}:{}{}", at.port, at.path)
        .into_client_request()
        .context("building the WebSocket request")?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    Ok(request)
}

impl ReadHalf {
    /// Reads what is available (at least one byte) into `buf`; `Ok(0)` at the end of the
    /// stream. For WebSocket, one binary frame's payload.
    async fn read_into(&mut self, buf: &mut BytesMut) -> Result<usize> {
        match self {
            ReadHalf::Tcp(io) => io.read_buf(buf).await.context("reading from the socket"),
            ReadHalf::Tls(io) => io
                .read_buf(buf)
                .await
                .context("reading from the TLS stream"),
            ReadHalf::Ws(io) => loop {
                match io.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    // Pings are answered by tungstenite itself; empty frames carry nothing.
                    Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Text(_) | Message::Frame(_))) => {
                        bail!("the broker sent a non-binary WebSocket message")
                    }
                    Some(Err(e)) => return Err(e).context("reading from the WebSocket"),
                }
            },
        }
    }

    /// Whether the peer has not closed the connection, without waiting (idle mode).
    async fn still_open(&mut self) -> bool {
        match self {
            // As before TLS: a zero-byte read means the broker closed it.
            ReadHalf::Tcp(io) => {
                let mut buf = [0u8; 64];
                match io.try_read(&mut buf) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                }
            }
            // A zero timeout polls the read once: pending means nothing happened.
            _ => {
                let mut buf = BytesMut::with_capacity(64);
                match timeout(Duration::ZERO, self.read_into(&mut buf)).await {
                    Err(_) => true,
                    Ok(Ok(n)) => n > 0,
                    Ok(Err(_)) => false,
                }
            }
        }
    }
}

impl WriteHalf {
    /// Writes all of `data` and pushes it onto the network: one `write_all` on TCP, a flush
    /// after it on TLS (rustls may hold records back otherwise), one binary frame on
    /// WebSocket.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            WriteHalf::Tcp(io) => io.write_all(data).await,
            WriteHalf::Tls(io) => {
                io.write_all(data).await?;
                io.flush().await
            }
            WriteHalf::Ws(io) => io
                .send(Message::Binary(Bytes::copy_from_slice(data)))
                .await
                .map_err(ws_error),
        }
    }

    /// Ends the sending side: TCP FIN, TLS close_notify, WebSocket close frame.
    pub(crate) async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            WriteHalf::Tcp(io) => io.shutdown().await,
            WriteHalf::Tls(io) => io.shutdown().await,
            WriteHalf::Ws(io) => io.close().await.map_err(ws_error),
        }
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::other(e)
}

/// Reads more bytes from a connection into `buf`, waiting at most `wait` (`None`: no
/// limit); errors on EOF and on timeout. Returns the number of bytes read.
pub(crate) async fn read_more(
    io: &mut ReadHalf,
    buf: &mut BytesMut,
    wait: Option<Duration>,
) -> Result<usize> {
    match io {
        // The baseline path, unchanged.
        ReadHalf::Tcp(io) => super::read_more(io, buf, wait).await,
        _ => {
            if buf.capacity() - buf.len() < 32 * 1024 {
                buf.reserve(128 * 1024);
            }
            let read = io.read_into(buf);
            let n = match wait {
                Some(w) => timeout(w, read)
                    .await
                    .map_err(|_| anyhow!("no data from the peer for {w:?}"))?,
                None => read.await,
            }?;
            if n == 0 {
                bail!("the peer closed the connection");
            }
            Ok(n)
        }
    }
}

/// A connection held open by idle mode.
pub(crate) struct Held {
    read: ReadHalf,
    write: WriteHalf,
}

impl Held {
    /// Keeps both halves of a connection.
    pub(crate) fn new(read: ReadHalf, write: WriteHalf) -> Held {
        Held { read, write }
    }

    /// Whether the broker has not closed it.
    pub(crate) async fn still_open(&mut self) -> bool {
        self.read.still_open().await
    }

    /// Writes `goodbye` (without waiting on a full socket for plain TCP, as before).
    pub(crate) async fn say(&mut self, goodbye: &[u8]) {
        match &self.write {
            WriteHalf::Tcp(io) => {
                let _ = io.try_write(goodbye);
            }
            _ => {
                let _ = timeout(Duration::from_millis(200), self.write.write_all(goodbye)).await;
            }
        }
    }
}

/// Builds the client TLS configuration: trust the PEM CA bundle `ca`, or (`insecure`) any
/// certificate. The ring provider is named explicitly so no process-wide default is needed.
pub(crate) fn client_config(ca: Option<&Path>, insecure: bool) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (ca, insecure) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        (Some(ca), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading --tls-ca {}", ca.display()))?
            {
                let certificate =
                    certificate.with_context(|| format!("parsing --tls-ca {}", ca.display()))?;
                roots
                    .add(certificate)
                    .with_context(|| format!("--tls-ca {}", ca.display()))?;
            }
            if roots.is_empty() {
                bail!("--tls-ca {}: no certificates in the file", ca.display());
            }
            builder.with_root_certificates(roots)
        }
        (None, false) => bail!(
            "a TLS URI needs --tls-ca FILE (the CA to trust) or --tls-insecure (no verification)"
        ),
    };
    Ok(builder.with_no_client_auth())
}

/// `--tls-insecure`: accepts any server certificate but still checks handshake signatures
/// (so the cost of a TLS handshake is the same as with verification, minus the chain).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
