//! Hostile HTTP clients on the management port: a request with huge headers or a huge body is
//! refused with its HTTP status, without the broker buffering it, and the API keeps serving
//! everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::http::get_as;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` (and as much of a body as the server reads) and returns the status line.
async fn status_of(api: SocketAddr, head: &[u8], body_bytes: usize) -> String {
    let mut stream = TcpStream::connect(api).await.unwrap();
    stream.write_all(head).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        // The server may answer and close before taking the whole body.
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut answer = Vec::new();
    let _ = common::within("the answer", stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_string()
}

async fn api_still_serves(api: SocketAddr) {
    let response = get_as(api, "/api/overview", "guest", "guest")
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_are_refused_and_the_api_keeps_serving() {
    let (broker, api) = common::broker_with_management().await;
    let filler = "a".repeat(1024 * 1024);
    let head = format!("GET /api/overview HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
    let status = status_of(api, head.as_bytes(), 0).await;
    assert!(
        status.is_empty() || status.contains(" 431 ") || status.contains(" 400 "),
        "a 1 MiB header got {status:?}"
    );
    api_still_serves(api).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_refused_and_the_api_keeps_serving() {
    let (broker, api) = common::broker_with_management().await;
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    // Announced: 1 GiB of definitions. The limit is 64 MiB; the answer must come without the
    // broker reading (let alone holding) the rest.
    let head = format!(
        "POST /api/definitions HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {credentials}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        1u64 << 30
    );
    let status = status_of(api, head.as_bytes(), 80 << 20).await;
    assert!(
        status.contains(" 413 ") || status.contains(" 400 "),
        "a 1 GiB body got {status:?}"
    );
    api_still_serves(api).await;
    broker.shutdown().await;
}
