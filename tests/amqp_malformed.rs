//! Bad input on the AMQP port, sent over a raw TCP socket: the server answers with
//! the protocol's error, closes only the offending connection, and a connection opened before
//! the bad one keeps working.
//!
//! The comments quote what RabbitMQ 3.10.8 sends. The tests assert RabbitMQ's reply code, the
//! `NAME - ` prefix of its reply text and the class/method ids it reports (the offending method,
//! or 0/0 for frame-level errors); the rest of the text is free.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::raw::{self, Close, Outcome, RawConnection, FRAME_METHOD, PROTOCOL_HEADER};
use common::{assert_connection_works, close, connect, TestBroker};

/// Runs `bad` against the broker while a healthy connection is open, then checks the healthy
/// connection still does a publish/get round trip.
async fn with_bystander<F, Fut>(broker: &TestBroker, bad: F)
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let bystander = connect(broker).await;
    assert_connection_works(&bystander).await;
    bad(broker.amqp_addr()).await;
    assert_connection_works(&bystander).await;
    close(bystander).await;
}

/// Checks the reply text's `NAME - ` prefix and the class/method ids of a connection.close.
fn assert_close(close: &Close, text_prefix: &str, class_method: (u16, u16)) {
    assert!(
        close.reply_text.starts_with(text_prefix),
        "reply text of {close:?} should start with {text_prefix:?}"
    );
    assert_eq!(
        (close.class_id, close.method_id),
        class_method,
        "class/method of {close:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_protocol_header_gets_the_servers_header_and_a_close() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::connect(addr).await;
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        // AMQP 0-9-1 §4.2.2: the server answers a bad header with the header it supports and
        // closes the socket (RabbitMQ: exactly these 8 bytes, then close).
        assert_eq!(conn.read_to_end().await, PROTOCOL_HEADER);
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_version_gets_the_servers_header_and_a_close() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        // An AMQP 1.0 header. RabbitMQ without its AMQP 1.0 plugin answers with its 0-9-1
        // header and closes.
        let mut conn = RawConnection::connect(addr).await;
        conn.send(b"AMQP\x00\x01\x00\x00").await;
        assert_eq!(conn.read_to_end().await, PROTOCOL_HEADER);
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_handshake_is_a_frame_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.send(b"this is not an AMQP frame at all, just some text\r\n")
            .await;
        // RabbitMQ reads the text as a frame header (type 't', size "s is"):
        // 501 "FRAME_ERROR - type 116, all octets = <<>>: {frame_too_large,1931503987,131064}",
        // class 0, method 0.
        let close = conn.expect_connection_close(501).await;
        assert_close(&close, "FRAME_ERROR - ", (0, 0));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_frame_end_octet_is_a_frame_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        let mut bad = raw::channel_open(1);
        *bad.last_mut().unwrap() = 0x00;
        conn.send(&bad).await;
        // RabbitMQ: 501 "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>:
        // {invalid_frame_end_marker,0}", class 0, method 0.
        let close = conn.expect_connection_close(501).await;
        assert_close(&close, "FRAME_ERROR - ", (0, 0));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_type_is_a_frame_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.send(&raw::frame(9, 0, b"what")).await;
        // RabbitMQ: 501 "FRAME_ERROR - type 9, all octets = <<\"what\">>: unknown_frame",
        // class 0, method 0.
        let close = conn.expect_connection_close(501).await;
        assert_close(&close, "FRAME_ERROR - ", (0, 0));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_on_a_nonzero_channel_closes_the_connection() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::frame(raw::FRAME_HEARTBEAT, 1, b"")).await;
        // AMQP 0-9-1 §4.2.7 says heartbeats carry channel 0 and asks for 501 FRAME_ERROR;
        // RabbitMQ sends 505 "UNEXPECTED_FRAME - type 8, all octets = <<>>", class 0,
        // method 0. Either is a connection exception; ignoring the frame is not.
        match conn.read_close().await {
            Outcome::ConnectionClose(close) => {
                assert!(
                    close.reply_code == 505 || close.reply_code == 501,
                    "{close:?}"
                );
                assert_eq!((close.class_id, close.method_id), (0, 0), "{close:?}");
                conn.read_to_end().await;
            }
            other => panic!("expected connection.close 505, got {other:?}"),
        }
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_frame_max_is_a_frame_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 4096).await;
        assert_eq!(conn.frame_max, 4096);
        conn.open_channel(1).await;
        let body = vec![b'x'; 8192];
        conn.send(&raw::basic_publish(1, "", "nowhere")).await;
        conn.send(&raw::content_header(1, body.len() as u64)).await;
        conn.send(&raw::content_body(1, &body)).await;
        // frame_max counts the whole frame, so the largest payload is frame_max - 8. RabbitMQ:
        // 501 "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,8192,4088}",
        // class 0, method 0.
        let close = conn.expect_connection_close(501).await;
        assert_close(&close, "FRAME_ERROR - ", (0, 0));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_on_an_unopened_channel_is_a_channel_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.send(&raw::queue_declare(5, "never-declared")).await;
        // A connection exception, not a channel one. RabbitMQ:
        // 504 "CHANNEL_ERROR - expected 'channel.open'", class 50, method 10 (the offending
        // queue.declare).
        let close = conn.expect_connection_close(504).await;
        assert_close(&close, "CHANNEL_ERROR - ", (50, 10));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_frame_without_publish_is_an_unexpected_frame() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::content_body(1, b"orphan body")).await;
        let close = conn.expect_connection_close(505).await;
        assert!(
            close.reply_text.starts_with("UNEXPECTED_FRAME"),
            "{close:?}"
        );
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_frame_without_publish_is_an_unexpected_frame() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::content_header(1, 5)).await;
        let close = conn.expect_connection_close(505).await;
        assert!(
            close.reply_text.starts_with("UNEXPECTED_FRAME"),
            "{close:?}"
        );
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_frame_in_the_middle_of_content_is_an_unexpected_frame() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::basic_publish(1, "", "nowhere")).await;
        conn.send(&raw::content_header(1, 10)).await;
        conn.send(&raw::content_body(1, b"12345")).await;
        // Five body bytes are still owed; a method now is out of order.
        conn.send(&raw::queue_declare(1, "")).await;
        let close = conn.expect_connection_close(505).await;
        assert!(
            close.reply_text.starts_with("UNEXPECTED_FRAME"),
            "{close:?}"
        );
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_channel_open_is_a_channel_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::channel_open(1)).await;
        // RabbitMQ: 504 "CHANNEL_ERROR - second 'channel.open' seen", class 20, method 10.
        let close = conn.expect_connection_close(504).await;
        assert_close(&close, "CHANNEL_ERROR - ", (20, 10));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_close_on_an_unopened_channel_is_a_channel_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        let channel_close = raw::Args::method(20, 40)
            .short(200)
            .shortstr("")
            .short(0)
            .short(0)
            .build();
        conn.send(&raw::frame(FRAME_METHOD, 7, &channel_close))
            .await;
        // RabbitMQ: 504 "CHANNEL_ERROR - expected 'channel.open'", class 20, method 40.
        let close = conn.expect_connection_close(504).await;
        assert_close(&close, "CHANNEL_ERROR - ", (20, 40));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_method_on_channel_zero_is_a_channel_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.send(&raw::queue_declare(0, "on-channel-zero")).await;
        // RabbitMQ: 504 "CHANNEL_ERROR - unexpected method in connection state running",
        // class 50, method 10.
        let close = conn.expect_connection_close(504).await;
        assert_close(&close, "CHANNEL_ERROR - ", (50, 10));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_method_arguments_are_a_frame_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        // queue.declare with one octet of arguments (it needs at least ticket + name + bits
        // + table).
        conn.send(&raw::frame(FRAME_METHOD, 1, &[0, 50, 0, 10, 0]))
            .await;
        // RabbitMQ: 501 "FRAME_ERROR - cannot decode <<0>>", class 50, method 10.
        let close = conn.expect_connection_close(501).await;
        assert_close(&close, "FRAME_ERROR - ", (50, 10));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_header_of_the_wrong_class_is_an_unexpected_frame() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::basic_publish(1, "", "nowhere")).await;
        let mut header = raw::content_header(1, 3);
        header[8] = 50; // class id 50 (queue) instead of 60 (basic)
        conn.send(&header).await;
        conn.send(&raw::content_body(1, b"abc")).await;
        // RabbitMQ: 505 "UNEXPECTED_FRAME - expected content header for class 60, got one for
        // class 50 instead", class 60, method 40.
        let close = conn.expect_connection_close(505).await;
        assert_close(&close, "UNEXPECTED_FRAME - ", (60, 40));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_closes_only_that_connection() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::frame(
            FRAME_METHOD,
            1,
            &raw::Args::method(60, 999).build(),
        ))
        .await;
        // RabbitMQ 3.10 crashes the connection process on {unknown_method_id,{60,999}} and
        // drops the socket without a connection.close. A connection.close with 540
        // NOT_IMPLEMENTED or 503 COMMAND_INVALID (AMQP 0-9-1 §1.1 reply codes) is the better
        // answer; either way the connection must end and nothing else may be disturbed.
        match conn.read_close().await {
            Outcome::ConnectionClose(close) => assert!(
                close.reply_code == 540 || close.reply_code == 503,
                "unexpected close for an unknown method: {close:?}"
            ),
            Outcome::Eof => {}
            other @ Outcome::ChannelClose(..) => {
                panic!("an unknown method is a connection error, got {other:?}")
            }
        }
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnect_mid_content_leaves_the_broker_working() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::basic_publish(1, "", "nowhere")).await;
        conn.send(&raw::content_header(1, 1_000_000)).await;
        conn.send(&raw::content_body(1, b"partial")).await;
        conn.abort();
    })
    .await;
    broker.shutdown().await;
}

/// `basic.publish` with `immediate=true`: RabbitMQ 3.x dropped immediate delivery and closes
/// the connection with 540 `NOT_IMPLEMENTED - immediate=true`, class 60, method 40; other
/// connections carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_publish_is_not_implemented() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        let publish = raw::Args::method(60, 40)
            .short(0)
            .shortstr("")
            .shortstr("nowhere")
            .octet(0b10)
            .build();
        conn.send(&raw::frame(FRAME_METHOD, 1, &publish)).await;
        let close = conn.expect_connection_close(540).await;
        assert_close(&close, "NOT_IMPLEMENTED - immediate=true", (60, 40));
    })
    .await;
    broker.shutdown().await;
}

/// A content header announcing a 4 GiB body is refused at once (RabbitMQ 3.10: 406
/// PRECONDITION_FAILED, the message is larger than `max_message_size`, 128 MiB), instead of the
/// broker waiting for, or buffering toward, the announced size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_larger_than_the_maximum_message_size_is_refused() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::basic_publish(1, "", "nowhere")).await;
        conn.send(&raw::content_header(1, 4 << 30)).await;
        match conn.read_close().await {
            Outcome::ChannelClose(channel, close) => {
                assert_eq!(channel, 1);
                assert_eq!(close.reply_code, 406, "{close:?}");
                assert_close(&close, "PRECONDITION_FAILED", (60, 40));
            }
            other => panic!("expected channel.close 406, got {other:?}"),
        }
    })
    .await;
    broker.shutdown().await;
}

/// A field table nested 10,000 deep in queue.declare's arguments is refused with a connection
/// error (the decoder stops at a fixed depth rather than recursing 10,000 times), and only that
/// connection goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_nested_ten_thousand_deep_is_refused() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        // Innermost: an empty table; each level wraps it as {"a": F<table>}.
        let mut table = 0u32.to_be_bytes().to_vec();
        for _ in 0..10_000 {
            let mut entry = vec![1u8, b'a', b'F'];
            entry.extend_from_slice(&table);
            let mut wrapped = (entry.len() as u32).to_be_bytes().to_vec();
            wrapped.extend_from_slice(&entry);
            table = wrapped;
        }
        let mut payload = raw::Args::method(50, 10)
            .short(0)
            .shortstr("deep")
            .octet(0)
            .build();
        payload.extend_from_slice(&table);
        let mut conn = RawConnection::open(addr, 131_072).await;
        conn.open_channel(1).await;
        conn.send(&raw::frame(FRAME_METHOD, 1, &payload)).await;
        match conn.read_close().await {
            Outcome::ConnectionClose(close) => {
                assert!(
                    [501, 502, 503].contains(&close.reply_code),
                    "expected a frame, syntax or command error: {close:?}"
                );
            }
            other => panic!("expected connection.close, got {other:?}"),
        }
    })
    .await;
    broker.shutdown().await;
}

/// Every channel the connection may have (the negotiated channel_max, 2047) opened at once, then
/// one more: the extra one is a connection error, the 2047 were served, and only that
/// connection goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_more_channels_than_channel_max_is_a_connection_error() {
    let broker = TestBroker::start().await;
    with_bystander(&broker, |addr| async move {
        let mut conn = RawConnection::open(addr, 131_072).await;
        let mut opens = Vec::new();
        for channel in 1..=2047u16 {
            opens.extend_from_slice(&raw::channel_open(channel));
        }
        conn.send(&opens).await;
        for _ in 1..=2047u16 {
            let ok = conn.read_frame().await.expect("channel.open-ok");
            assert_eq!(ok.method_id(), Some((20, 11)), "expected channel.open-ok");
        }
        conn.send(&raw::channel_open(2048)).await;
        match conn.read_close().await {
            Outcome::ConnectionClose(close) => {
                assert!(
                    [504, 530].contains(&close.reply_code),
                    "expected CHANNEL_ERROR or NOT_ALLOWED: {close:?}"
                );
            }
            other => panic!("expected connection.close, got {other:?}"),
        }
    })
    .await;
    broker.shutdown().await;
}
