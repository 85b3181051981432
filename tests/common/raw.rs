//! A hand-rolled AMQP 0-9-1 client over a plain `TcpStream`, for sending what no client
//! library would: malformed frames, out-of-order frames, oversized frames.
//!
//! It deliberately does not use the broker's own codec crate, so a codec bug cannot hide
//! itself. It encodes only the handful of methods the tests need (AMQP 0-9-1 §4.2: a frame is
//! type octet, channel short, size long, payload, frame-end 0xCE).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::within;

/// The protocol header a 0-9-1 client sends and a 0-9-1 server answers a bad header with.
pub(crate) const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame types (AMQP 0-9-1 §4.2.3).
pub(crate) const FRAME_METHOD: u8 = 1;
pub(crate) const FRAME_HEADER: u8 = 2;
pub(crate) const FRAME_BODY: u8 = 3;
pub(crate) const FRAME_HEARTBEAT: u8 = 8;
/// Every frame ends with this octet.
pub(crate) const FRAME_END: u8 = 0xCE;

/// One frame as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) channel: u16,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    /// `(class_id, method_id)` of a method frame.
    pub(crate) fn method_id(&self) -> Option<(u16, u16)> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        Some((
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            u16::from_be_bytes([self.payload[2], self.payload[3]]),
        ))
    }
}

/// A `connection.close` or `channel.close` as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) reply_code: u16,
    pub(crate) reply_text: String,
    pub(crate) class_id: u16,
    pub(crate) method_id: u16,
}

/// What the server did in answer to something.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server sent `connection.close` (on channel 0).
    ConnectionClose(Close),
    /// The server sent `channel.close` on this channel.
    ChannelClose(u16, Close),
    /// The server closed the socket without a close method.
    Eof,
}

/// Builds a frame: type, channel, size, payload, frame-end.
pub(crate) fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("payload fits")
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

/// Method payload builder: class id, method id, then arguments.
pub(crate) struct Args(Vec<u8>);

impl Args {
    pub(crate) fn method(class_id: u16, method_id: u16) -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(&class_id.to_be_bytes());
        out.extend_from_slice(&method_id.to_be_bytes());
        Args(out)
    }
    pub(crate) fn octet(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub(crate) fn short(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn long(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn shortstr(mut self, s: &str) -> Self {
        self.0
            .push(u8::try_from(s.len()).expect("short string fits"));
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub(crate) fn longstr(mut self, s: &[u8]) -> Self {
        self.0
            .extend_from_slice(&u32::try_from(s.len()).expect("fits").to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    /// An empty field table.
    pub(crate) fn empty_table(self) -> Self {
        self.long(0)
    }
    pub(crate) fn build(self) -> Vec<u8> {
        self.0
    }
}

/// `channel.open` (20,10) on `channel`.
pub(crate) fn channel_open(channel: u16) -> Vec<u8> {
    frame(
        FRAME_METHOD,
        channel,
        &Args::method(20, 10).shortstr("").build(),
    )
}

/// `queue.declare` (50,10): passive/durable/exclusive/auto-delete/no-wait all false.
pub(crate) fn queue_declare(channel: u16, queue: &str) -> Vec<u8> {
    frame(
        FRAME_METHOD,
        channel,
        &Args::method(50, 10)
            .short(0)
            .shortstr(queue)
            .octet(0)
            .empty_table()
            .build(),
    )
}

/// `basic.publish` (60,40) with mandatory/immediate false.
pub(crate) fn basic_publish(channel: u16, exchange: &str, routing_key: &str) -> Vec<u8> {
    frame(
        FRAME_METHOD,
        channel,
        &Args::method(60, 40)
            .short(0)
            .shortstr(exchange)
            .shortstr(routing_key)
            .octet(0)
            .build(),
    )
}

/// A content header frame for class basic with no properties.
pub(crate) fn content_header(channel: u16, body_size: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&60u16.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    payload.extend_from_slice(&body_size.to_be_bytes());
    payload.extend_from_slice(&0u16.to_be_bytes());
    frame(FRAME_HEADER, channel, &payload)
}

/// A content body frame.
pub(crate) fn content_body(channel: u16, body: &[u8]) -> Vec<u8> {
    frame(FRAME_BODY, channel, body)
}

/// `basic.consume` (60,20) with no-ack true, so deliveries need no acks.
pub(crate) fn basic_consume(channel: u16, queue: &str, no_ack: bool) -> Vec<u8> {
    let bits = if no_ack { 0b10 } else { 0 };
    frame(
        FRAME_METHOD,
        channel,
        &Args::method(60, 20)
            .short(0)
            .shortstr(queue)
            .shortstr("")
            .octet(bits)
            .empty_table()
            .build(),
    )
}

/// A raw connection to the broker.
pub(crate) struct RawConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// frame_max agreed in connection.tune-ok.
    pub(crate) frame_max: u32,
}

impl RawConnection {
    /// Opens the TCP connection only.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = within("TCP connect", TcpStream::connect(addr))
            .await
            .expect("TCP connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        RawConnection {
            stream,
            buffer: Vec::new(),
            frame_max: 0,
        }
    }

    /// Connects and performs the whole handshake (header, start-ok PLAIN guest/guest, tune-ok
    /// with the server's channel_max, `min(frame_max, server's)` and heartbeat 0, open `/`).
    pub(crate) async fn open(addr: SocketAddr, frame_max: u32) -> Self {
        let mut conn = Self::connect(addr).await;
        conn.send(PROTOCOL_HEADER).await;
        let start = conn.read_frame().await.expect("connection.start");
        assert_eq!(
            start.method_id(),
            Some((10, 10)),
            "expected connection.start"
        );
        let start_ok = Args::method(10, 11)
            .empty_table()
            .shortstr("PLAIN")
            .longstr(b"\0guest\0guest")
            .shortstr("en_US")
            .build();
        conn.send(&frame(FRAME_METHOD, 0, &start_ok)).await;
        let tune = conn.read_frame().await.expect("connection.tune");
        assert_eq!(tune.method_id(), Some((10, 30)), "expected connection.tune");
        let p = &tune.payload;
        let channel_max = u16::from_be_bytes([p[4], p[5]]);
        let server_frame_max = u32::from_be_bytes([p[6], p[7], p[8], p[9]]);
        let frame_max = if server_frame_max == 0 {
            frame_max
        } else {
            frame_max.min(server_frame_max)
        };
        let tune_ok = Args::method(10, 31)
            .short(channel_max)
            .long(frame_max)
            .short(0)
            .build();
        conn.send(&frame(FRAME_METHOD, 0, &tune_ok)).await;
        conn.frame_max = frame_max;
        let open = Args::method(10, 40)
            .shortstr("/")
            .shortstr("")
            .octet(0)
            .build();
        conn.send(&frame(FRAME_METHOD, 0, &open)).await;
        let open_ok = conn.read_frame().await.expect("connection.open-ok");
        assert_eq!(
            open_ok.method_id(),
            Some((10, 41)),
            "expected connection.open-ok"
        );
        conn
    }

    /// Opens channel `channel` and waits for channel.open-ok.
    pub(crate) async fn open_channel(&mut self, channel: u16) {
        self.send(&channel_open(channel)).await;
        let ok = self.read_frame().await.expect("channel.open-ok");
        assert_eq!(ok.method_id(), Some((20, 11)), "expected channel.open-ok");
        assert_eq!(ok.channel, channel);
    }

    /// Writes raw bytes. Write errors are ignored: the server may already have closed.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        let _ = within("socket write", self.stream.write_all(bytes)).await;
        let _ = within("socket flush", self.stream.flush()).await;
    }

    /// Reads raw bytes until the server closes the socket (or resets it).
    pub(crate) async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buffer);
        let _ = within("socket close", self.stream.read_to_end(&mut out)).await;
        out
    }

    /// Reads one frame; `None` when the socket closes first.
    pub(crate) async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buffer.len() >= 7 {
                let size = u32::from_be_bytes([
                    self.buffer[3],
                    self.buffer[4],
                    self.buffer[5],
                    self.buffer[6],
                ]) as usize;
                if self.buffer.len() >= size + 8 {
                    let rest = self.buffer.split_off(size + 8);
                    let raw = std::mem::replace(&mut self.buffer, rest);
                    assert_eq!(raw[size + 7], FRAME_END, "server sent a bad frame-end");
                    return Some(Frame {
                        kind: raw[0],
                        channel: u16::from_be_bytes([raw[1], raw[2]]),
                        payload: raw[7..size + 7].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 4096];
            match within("a frame from the server", self.stream.read(&mut chunk)).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until the server closes the connection or a channel, skipping anything
    /// else (heartbeats, deliveries). Answers a `connection.close` with `close-ok`.
    pub(crate) async fn read_close(&mut self) -> Outcome {
        while let Some(frame) = self.read_frame().await {
            match frame.method_id() {
                Some((10, 50)) => {
                    let close = parse_close(&frame.payload);
                    let close_ok = Args::method(10, 51).build();
                    self.send(&super::raw::frame(FRAME_METHOD, 0, &close_ok))
                        .await;
                    return Outcome::ConnectionClose(close);
                }
                Some((20, 40)) => {
                    return Outcome::ChannelClose(frame.channel, parse_close(&frame.payload))
                }
                _ => continue,
            }
        }
        Outcome::Eof
    }

    /// Expects `connection.close` with `code`, answers close-ok and expects the socket to close.
    /// Returns the reply text.
    pub(crate) async fn expect_connection_close(&mut self, code: u16) -> Close {
        match self.read_close().await {
            Outcome::ConnectionClose(close) => {
                assert_eq!(
                    close.reply_code, code,
                    "expected connection.close {code}, got {close:?}"
                );
                // After close-ok the server closes the socket (read_to_end times out otherwise).
                self.read_to_end().await;
                close
            }
            other => panic!("expected connection.close {code}, got {other:?}"),
        }
    }

    /// Reads frames until `count` `basic.deliver` methods (60,60) have arrived, and waits for
    /// the content of the last one (header and body frames).
    pub(crate) async fn read_deliveries(&mut self, count: usize) {
        let mut seen = 0;
        while seen < count {
            let frame = self.read_frame().await.expect("a basic.deliver");
            if frame.method_id() == Some((60, 60)) {
                seen += 1;
            }
        }
        let header = self.read_frame().await.expect("a content header");
        assert_eq!(header.kind, FRAME_HEADER);
        let body = self.read_frame().await.expect("a content body");
        assert_eq!(body.kind, FRAME_BODY);
    }

    /// Drops the socket abruptly (no connection.close).
    pub(crate) fn abort(self) {
        drop(self.stream);
    }
}

fn parse_close(payload: &[u8]) -> Close {
    let reply_code = u16::from_be_bytes([payload[4], payload[5]]);
    let len = payload[6] as usize;
    let reply_text = String::from_utf8_lossy(&payload[7..7 + len]).into_owned();
    let rest = &payload[7 + len..];
    Close {
        reply_code,
        reply_text,
        class_id: u16::from_be_bytes([rest[0], rest[1]]),
        method_id: u16::from_be_bytes([rest[2], rest[3]]),
    }
}
