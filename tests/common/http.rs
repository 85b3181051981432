//! A minimal HTTP/1.0 GET for the tests that read warren's Prometheus endpoint or a
//! Prometheus server's API: HTTP/1.0, so the answer is neither chunked nor kept alive.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{within_for, STEP};

/// An HTTP answer.
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The header block, as sent.
    pub(crate) head: String,
    /// The body.
    pub(crate) body: String,
}

/// `GET target` from `addr`; fails the test if no answer comes within [`STEP`].
pub(crate) async fn get(addr: SocketAddr, target: &str) -> std::io::Result<Response> {
    request(addr, target, "").await
}

/// `GET target` with `headers` (each line ending in CRLF).
async fn request(addr: SocketAddr, target: &str, headers: &str) -> std::io::Result<Response> {
    send(addr, "GET", target, headers, "").await
}

/// `method target` as `user` / `password` with a JSON `body` (may be empty).
pub(crate) async fn send_as(
    addr: SocketAddr,
    method: &str,
    target: &str,
    (user, password): (&str, &str),
    body: &str,
) -> std::io::Result<Response> {
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let headers = format!(
        "Authorization: Basic {credentials}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    send(addr, method, target, &headers, body).await
}

async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n{headers}\r\n{body}"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = within_for(STEP, "an HTTP answer", exchange).await?;
    let text = String::from_utf8_lossy(&raw);
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of the HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status"))?;
    Ok(Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// `GET target` with HTTP basic authentication as `user` / `password`.
pub(crate) async fn get_as(
    addr: SocketAddr,
    target: &str,
    user: &str,
    password: &str,
) -> std::io::Result<Response> {
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    request(
        addr,
        target,
        &format!("Authorization: Basic {credentials}\r\n"),
    )
    .await
}
