//! TLS and WebSocket listeners: real clients (pika, paho-mqtt) over AMQPS, MQTTS, ws and
//! wss; client-certificate verification and certificate login; a stalled TLS handshake;
//! WebSocket framing (a packet over several frames, several packets in one frame); and
//! certificate reload on SIGHUP. Certificates are made at run time by `warren::tls::generate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{External, TestBroker};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use warren_amqp::frame::{decode_frame, encode_method_frame, Frame};
use warren_amqp::method::{ConnectionStartOk, Method};
use warren_amqp::table::FieldTable;

const STEP: Duration = Duration::from_secs(10);

/// Certificates for a test: a CA with server and client certificates, and a second CA's
/// client certificate (which the broker must not accept).
struct Material {
    dir: tempfile::TempDir,
    generated: warren::tls::generate::Generated,
    foreign: warren::tls::generate::Generated,
}

fn material() -> Material {
    let dir = tempfile::tempdir().unwrap();
    let generated = warren::tls::generate::generate(dir.path(), &["guest", "mallory"]).unwrap();
    let foreign = warren::tls::generate::generate(&dir.path().join("foreign"), &["guest"]).unwrap();
    Material {
        dir,
        generated,
        foreign,
    }
}

fn tls_settings(material: &Material, verify: bool, require: bool) -> warren::tls::TlsSettings {
    warren::tls::TlsSettings {
        certificate: material.generated.server_certificate.clone(),
        key: material.generated.server_key.clone(),
        ca: Some(material.generated.ca_certificate.clone()),
        verify_peer: verify,
        fail_if_no_peer_certificate: require,
    }
}

async fn start(
    material: &Material,
    verify: bool,
    require: bool,
    configure: impl FnOnce(&mut warren::Config) + Send + 'static,
) -> TestBroker {
    let tls = tls_settings(material, verify, require);
    TestBroker::options()
        .external(External::Never)
        .config(move |config| {
            config.amqps_port = Some(0);
            config.mqtts_port = Some(0);
            config.ws_port = Some(0);
            config.wss_port = Some(0);
            config.tls = Some(tls);
            config.mqtt_ssl_cert_login = true;
            configure(config);
        })
        .start()
        .await
}

/// A TLS client trusting `ca`, presenting `client` (certificate, key) if given.
fn connector(ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((certificate, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(certificate)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    address: SocketAddr,
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpStream::connect(address).await?;
    connector(ca, client)
        .connect(ServerName::try_from("localhost").unwrap(), socket)
        .await
}

/// Reads one AMQP frame (None when the connection ends or fails).
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Ok(Some(frame)) = decode_frame(buffer, 1 << 20) {
            return Some(frame);
        }
        buffer.reserve(4096);
        match tokio::time::timeout(STEP, stream.read_buf(buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no AMQP frame within {STEP:?}"),
        }
    }
}

/// Sends the AMQP protocol header and returns the mechanisms connection.start offers
/// (None if the connection ended instead).
async fn amqp_start<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Option<String> {
    stream.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
    match read_frame(stream, buffer).await? {
        Frame::Method {
            method: Method::ConnectionStart(start),
            ..
        } => Some(String::from_utf8_lossy(&start.mechanisms).into_owned()),
        other => panic!("expected connection.start, got {other:?}"),
    }
}

async fn send_start_ok<S: AsyncWrite + Unpin>(stream: &mut S, mechanism: &str, response: &[u8]) {
    let mut out = BytesMut::new();
    encode_method_frame(
        0,
        &Method::ConnectionStartOk(ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: mechanism.into(),
            response: bytes::Bytes::copy_from_slice(response),
            locale: "en_US".into(),
        }),
        &mut out,
    );
    stream.write_all(&out).await.unwrap();
}

/// pika over AMQPS (PLAIN and EXTERNAL), paho-mqtt over MQTTS, ws and wss, certificate login,
/// and a WebSocket device's message reaching an AMQP consumer, in one Python script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_over_tls_and_websocket() {
    let material = material();
    let broker = start(&material, true, false, |_| {}).await;
    common::python::require_modules(&["pika", "paho.mqtt"]).await;
    let python = common::python::interpreter();
    let script = common::python::scripts_dir().join("test_tls.py");
    let local = |address: Option<SocketAddr>| {
        let address = address.expect("listener on");
        format!("127.0.0.1:{}", address.port())
    };
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .env("WARREN_AMQP", local(Some(broker.amqp_addr())))
        .env("WARREN_AMQPS", local(broker.in_process().amqps_addr()))
        .env("WARREN_MQTT", local(Some(broker.mqtt_addr())))
        .env("WARREN_MQTTS", local(broker.in_process().mqtts_addr()))
        .env("WARREN_WS", local(broker.in_process().ws_addr()))
        .env("WARREN_WSS", local(broker.in_process().wss_addr()))
        .env("WARREN_CERTS", material.dir.path())
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("test_tls.py finishes within 180 s")
        .unwrap();
    assert!(
        output.status.success(),
        "test_tls.py failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    broker.shutdown().await;
}

/// With fail_if_no_peer_cert, a client without a certificate and one whose certificate
/// another CA signed get no session; a client with a valid certificate does.
#[tokio::test]
async fn fail_if_no_peer_cert_refuses_clients_without_a_valid_certificate() {
    let material = material();
    let broker = start(&material, true, true, |_| {}).await;
    let address = broker.in_process().amqps_addr().unwrap();
    let ca = &material.generated.ca_certificate;

    // TLS 1.3 finishes the client's side of the handshake before the server checks the
    // certificate: the refusal shows as a failed handshake or a connection that ends.
    for client in [None, Some(&material.foreign.clients[0])] {
        let refused = match tls_connect(address, ca, client).await {
            Err(_) => true,
            Ok(mut stream) => amqp_start(&mut stream, &mut BytesMut::new())
                .await
                .is_none(),
        };
        assert!(
            refused,
            "a client with {} got an AMQP session",
            if client.is_none() {
                "no certificate"
            } else {
                "another CA's certificate"
            }
        );
    }
    let mut stream = tls_connect(address, ca, Some(&material.generated.clients[0]))
        .await
        .expect("a valid client certificate is accepted");
    let mechanisms = amqp_start(&mut stream, &mut BytesMut::new())
        .await
        .expect("connection.start");
    assert!(mechanisms.contains("EXTERNAL"), "offered: {mechanisms}");
    broker.shutdown().await;
}

/// EXTERNAL is offered only with a verified client certificate, logs in as its CN, and is
/// refused (403 ACCESS_REFUSED) without a certificate or for a CN that names no user.
#[tokio::test]
async fn external_login_needs_a_certificate_of_a_known_user() {
    let material = material();
    let broker = start(&material, true, false, |_| {}).await;
    let address = broker.in_process().amqps_addr().unwrap();
    let ca = &material.generated.ca_certificate;

    let guest = &material.generated.clients[0];
    let mallory = &material.generated.clients[1];
    // (client certificate, EXTERNAL offered, reply to start-ok EXTERNAL)
    let cases = [
        (None, false, "connection.close 403"),
        (Some(mallory), true, "connection.close 403"),
        (Some(guest), true, "connection.tune"),
    ];
    for (client, offered, expected) in cases {
        let mut stream = tls_connect(address, ca, client).await.unwrap();
        let mut buffer = BytesMut::new();
        let mechanisms = amqp_start(&mut stream, &mut buffer).await.unwrap();
        assert_eq!(
            mechanisms.contains("EXTERNAL"),
            offered,
            "offered: {mechanisms}"
        );
        send_start_ok(&mut stream, "EXTERNAL", b"").await;
        let reply = match read_frame(&mut stream, &mut buffer).await {
            Some(Frame::Method {
                method: Method::ConnectionClose(close),
                ..
            }) if close.reply_code == 403 => "connection.close 403",
            Some(Frame::Method {
                method: Method::ConnectionTune(_),
                ..
            }) => "connection.tune",
            other => panic!("unexpected reply to EXTERNAL: {other:?}"),
        };
        assert_eq!(reply, expected, "client certificate {client:?}");
    }
    broker.shutdown().await;
}

/// A client that opens a TCP connection to 5671 and never completes the TLS handshake
/// (slowloris) is dropped after the handshake timeout; other clients carry on meanwhile.
#[tokio::test]
async fn stalled_tls_handshake_is_dropped_after_the_timeout() {
    let material = material();
    let broker = start(&material, false, false, |config| {
        config.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let address = broker.in_process().amqps_addr().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut socket = TcpStream::connect(address).await.unwrap();
        // The start of a TLS record, and then nothing.
        socket.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stalled.push(socket);
    }
    // Others connect and work while the stalled ones wait.
    let ca = &material.generated.ca_certificate;
    let mut stream = tls_connect(address, ca, None).await.unwrap();
    assert!(amqp_start(&mut stream, &mut BytesMut::new())
        .await
        .is_some());
    for mut socket in stalled {
        let mut scratch = [0u8; 64];
        let ended = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut scratch))
            .await
            .expect("a stalled handshake is dropped within the timeout (1 s) plus slack");
        assert!(matches!(ended, Ok(0) | Err(_)), "got {ended:?}");
    }
    broker.shutdown().await;
}

async fn ws_connect(address: SocketAddr) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let socket = TcpStream::connect(address).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{}/ws",
            address.port()
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, socket)
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("mqtt"),
        "the mqtt subprotocol is negotiated"
    );
    ws
}

/// MQTT 3.1.1 CONNECT with clean session, client id `id`, keepalive 30 s.
fn connect_packet(id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Reads binary frames until `count` whole MQTT packets arrived; returns their first bytes.
async fn read_packets<S>(ws: &mut S, count: usize) -> Vec<u8>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut buffer = Vec::new();
    let mut kinds = Vec::new();
    while kinds.len() < count {
        let message = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("frame read");
        if let Message::Binary(data) = message {
            buffer.extend_from_slice(&data);
        }
        // Every packet here is short: one length byte.
        while buffer.len() >= 2 && buffer.len() >= 2 + buffer[1] as usize {
            kinds.push(buffer[0]);
            buffer.drain(..2 + buffer[1] as usize);
        }
    }
    kinds
}

/// MQTT over WebSocket: a packet may span frames and a frame may hold several packets;
/// a wrong path is refused; pings are answered.
#[tokio::test]
async fn websocket_frames_carry_mqtt_packets_in_any_split() {
    let material = material();
    let broker = start(&material, false, false, |_| {}).await;
    let address = broker.in_process().ws_addr().unwrap();
    let mut ws = ws_connect(address).await;

    // CONNECT split over three frames.
    let connect = connect_packet("wt-ws-split");
    for part in [&connect[..3], &connect[3..9], &connect[9..]] {
        ws.send(Message::Binary(part.to_vec().into()))
            .await
            .unwrap();
    }
    assert_eq!(read_packets(&mut ws, 1).await, vec![0x20], "CONNACK");

    // SUBSCRIBE (QoS 0) and a PUBLISH to the same topic in one frame.
    let topic = b"wt/ws/split";
    let mut subscribe = vec![0x82, (2 + 2 + topic.len() + 1) as u8, 0, 1];
    subscribe.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    subscribe.extend_from_slice(topic);
    subscribe.push(0);
    let mut publish = vec![0x30, (2 + topic.len() + 5) as u8];
    publish.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    publish.extend_from_slice(topic);
    publish.extend_from_slice(b"hello");
    let mut both = subscribe.clone();
    both.extend_from_slice(&publish);
    ws.send(Message::Binary(both.into())).await.unwrap();
    assert_eq!(
        read_packets(&mut ws, 2).await,
        vec![0x90, 0x30],
        "SUBACK then the PUBLISH"
    );

    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(STEP, ws.next()).await.unwrap();
    assert!(matches!(pong, Some(Ok(Message::Pong(_)))), "got {pong:?}");
    ws.close(None).await.unwrap();

    // Another path is not the MQTT endpoint.
    let socket = TcpStream::connect(address).await.unwrap();
    let refused =
        tokio_tungstenite::client_async(format!("ws://127.0.0.1:{}/mqtt", address.port()), socket)
            .await;
    assert!(refused.is_err(), "upgrade on /mqtt accepted");
    broker.shutdown().await;
}

/// SIGHUP makes the broker re-read its certificate: new connections get the new one, and a
/// connection opened before keeps working.
#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections() {
    let material = material();
    let certs = material.dir.path();
    let certificate = certs.join("server_certificate.pem");
    let key = certs.join("server_key.pem");
    let broker = TestBroker::options()
        .process()
        .args(&[
            "--amqps-port",
            "0",
            "--mqtts-port",
            "0",
            "--wss-port",
            "0",
            "--tls-cert",
            certificate.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .start()
        .await;
    // The AMQPS port from the start-up log.
    let line = broker
        .log()
        .wait_for(0, "the AMQPS listener", STEP, |line| {
            line.contains("AMQP 0-9-1 over TLS listener started")
        })
        .await;
    let start = line.find("address=").unwrap() + "address=".len();
    let end = line[start..]
        .find(char::is_whitespace)
        .map_or(line.len(), |end| start + end);
    let address: SocketAddr = line[start..end].parse().unwrap();

    let old_ca = material.generated.ca_certificate.clone();
    let mut old = tls_connect(address, &old_ca, None).await.unwrap();
    let mut old_buffer = BytesMut::new();
    amqp_start(&mut old, &mut old_buffer).await.unwrap();

    // New material (a new CA) at the same paths, then SIGHUP.
    let renewed = tempfile::tempdir().unwrap();
    let fresh = warren::tls::generate::generate(renewed.path(), &[]).unwrap();
    std::fs::copy(
        &fresh.server_certificate,
        certs.join("server_certificate.pem"),
    )
    .unwrap();
    std::fs::copy(&fresh.server_key, certs.join("server_key.pem")).unwrap();
    let pid = broker.pid() as i32;
    // SAFETY: signals the broker child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);

    // New connections soon present the new certificate (trusted only through the new CA).
    let mut reloaded = false;
    for _ in 0..50 {
        if tls_connect(address, &fresh.ca_certificate, None)
            .await
            .is_ok()
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "no connection presented the reloaded certificate");
    assert!(
        tls_connect(address, &old_ca, None).await.is_err(),
        "the old certificate is still served to new connections"
    );

    // The connection opened before the reload still talks: finish its handshake.
    send_start_ok(&mut old, "PLAIN", b"\0guest\0guest").await;
    match read_frame(&mut old, &mut old_buffer).await {
        Some(Frame::Method {
            method: Method::ConnectionTune(_),
            ..
        }) => {}
        other => panic!("the old connection stopped working: {other:?}"),
    }
    broker.shutdown().await;
}
