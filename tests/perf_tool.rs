//! `warren perf` against an in-process warren: short AMQP, MQTT, mqtt-to-amqp and idle runs
//! through the library API, over plain TCP, TLS (amqps, mqtts) and MQTT over WebSocket (ws,
//! wss), checking that every published message was consumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{External, TestBroker};
use warren_perf::{self as perf, Options, Report};

fn amqp_uri(addr: SocketAddr) -> String {
    format!("amqp://guest:guest@{addr}/%2f")
}

fn mqtt_uri(addr: SocketAddr) -> String {
    format!("mqtt://{addr}")
}

/// Runs `perf::run` on a blocking thread (it builds its own runtime) while this runtime keeps
/// serving the broker.
async fn run(options: Options) -> Report {
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::task::spawn_blocking(move || perf::run(&options)),
    )
    .await
    .expect("the perf run finishes within 2 minutes")
    .expect("the perf thread does not panic")
    .unwrap_or_else(|e| panic!("perf run failed: {e:#}"));
    let json = report.to_json();
    assert!(!json.contains('\n'), "one JSON line: {json}");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(parsed["consumed"], report.consumed);
    report
}

fn quiet() -> Options {
    Options {
        quiet: true,
        timeout: 20,
        threads: Some(2),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_one_producer_one_consumer() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let report = run(Options {
        uri: amqp_uri(broker.amqp_addr()),
        count: Some(2000),
        size: 64,
        confirm: Some(100),
        prefetch: 50,
        multi_ack_every: Some(10),
        mandatory: true,
        broker_pid: Some(std::process::id()),
        ..quiet()
    })
    .await;
    assert_eq!(report.published, 2000);
    assert_eq!(report.confirmed, 2000);
    assert_eq!(report.consumed, report.published);
    assert_eq!((report.lost, report.foreign), (0, 0));
    assert_eq!(report.latency.samples, 2000);
    assert!(report.latency.p50_us > 0.0 && report.latency.max_us >= report.latency.p99_us);
    assert!(report.publish_rate > 0.0 && report.consume_rate > 0.0);
    assert!(report.client_cpu_s > 0.0);
    assert!(report.broker_rss_after_kib.is_some());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_several_queues_persistent_auto_ack() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let report = run(Options {
        uri: amqp_uri(broker.amqp_addr()),
        producers: 2,
        consumers: 2,
        queues: 2,
        count: Some(1000),
        size: 16,
        persistent: true,
        confirm: Some(64),
        auto_ack: true,
        ..quiet()
    })
    .await;
    assert_eq!(report.published, 2000);
    assert_eq!(report.consumed, 2000);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_qos1_one_publisher_one_subscriber() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let report = run(Options {
        uri: mqtt_uri(broker.mqtt_addr()),
        count: Some(2000),
        size: 64,
        qos: 1,
        ..quiet()
    })
    .await;
    assert_eq!(report.mode, "mqtt");
    assert_eq!(report.published, 2000);
    assert_eq!(report.confirmed, 2000);
    assert_eq!(report.consumed, report.published);
    assert_eq!(report.latency.samples, 2000);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_qos2_and_fan_out() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    // Two subscribers on one topic: every message is delivered twice.
    let report = run(Options {
        uri: mqtt_uri(broker.mqtt_addr()),
        consumers: 2,
        count: Some(500),
        size: 32,
        qos: 2,
        ..quiet()
    })
    .await;
    assert_eq!(report.published, 500);
    assert_eq!(report.confirmed, 500);
    assert_eq!(report.expected, 1000);
    assert_eq!(report.consumed, 1000);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_to_amqp_through_amq_topic() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let report = run(Options {
        mode: perf::Mode::MqttToAmqp,
        uri: mqtt_uri(broker.mqtt_addr()),
        amqp_uri: Some(amqp_uri(broker.amqp_addr())),
        count: Some(1000),
        size: 64,
        qos: 1,
        ..quiet()
    })
    .await;
    assert_eq!(report.mode, "mqtt-to-amqp");
    assert_eq!(report.published, 1000);
    assert_eq!(report.consumed, report.published);
    assert_eq!(report.latency.samples, 1000);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_both_protocols() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    for uri in [amqp_uri(broker.amqp_addr()), mqtt_uri(broker.mqtt_addr())] {
        let report = run(Options {
            uri,
            idle: Some(50),
            duration: Some(0.5),
            broker_pid: Some(std::process::id()),
            ..quiet()
        })
        .await;
        let idle = report.idle.expect("idle report");
        assert_eq!((idle.requested, idle.opened, idle.failed), (50, 50, 0));
        assert_eq!(idle.still_open, 50);
        assert!(idle.rss_per_conn_kib.is_some());
    }
    broker.shutdown().await;
}

/// Queue arguments, priorities and dead letters: a 10-level priority queue takes publishes
/// cycling priorities 0..9; a queue with `x-message-ttl` 0 dead-letters everything to the
/// `--consume-queue`; and rejecters nack everything they get into another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_queue_and_dead_letter_runs() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    let uri = amqp_uri(broker.amqp_addr());
    let report = run(Options {
        uri: uri.clone(),
        count: Some(2000),
        size: 64,
        prefetch: 50,
        queue_args: vec!["x-max-priority=10".into()],
        priority_spread: Some(10),
        ..quiet()
    })
    .await;
    assert_eq!((report.published, report.consumed), (2000, 2000));
    assert_eq!(report.priority_spread, Some(10));
    let dead_letter_to = |queue: &str| {
        vec![
            "x-dead-letter-exchange=".to_string(),
            format!("x-dead-letter-routing-key={queue}"),
        ]
    };
    let mut ttl_args = dead_letter_to("perf-expired");
    ttl_args.push("x-message-ttl=0".into());
    let report = run(Options {
        uri: uri.clone(),
        count: Some(2000),
        size: 64,
        queue_pattern: "perf-ttl-%d".into(),
        queue_args: ttl_args,
        consume_queue: Some("perf-expired".into()),
        ..quiet()
    })
    .await;
    assert_eq!((report.published, report.consumed), (2000, 2000));
    assert_eq!(report.latency.samples, 2000);
    let report = run(Options {
        uri,
        count: Some(2000),
        size: 64,
        prefetch: 100,
        queue_pattern: "perf-rejected-%d".into(),
        queue_args: dead_letter_to("perf-dead"),
        consume_queue: Some("perf-dead".into()),
        rejecters: 2,
        ..quiet()
    })
    .await;
    assert_eq!((report.published, report.consumed), (2000, 2000));
    assert_eq!(report.rejected, 2000);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_errors_fail_the_run() {
    let broker = TestBroker::options()
        .external(External::Never)
        .start()
        .await;
    // A wrong password: the broker refuses the login.
    let err = tokio::task::spawn_blocking({
        let uri = format!("amqp://guest:wrong@{}/%2f", broker.amqp_addr());
        move || {
            perf::run(&Options {
                uri,
                count: Some(10),
                ..quiet()
            })
        }
    })
    .await
    .unwrap()
    .expect_err("a refused login fails the run");
    assert!(format!("{err:#}").contains("connection"), "{err:#}");
    // A vhost that does not exist.
    let err = tokio::task::spawn_blocking({
        let uri = format!("amqp://guest:guest@{}/nowhere", broker.amqp_addr());
        move || {
            perf::run(&Options {
                uri,
                count: Some(10),
                ..quiet()
            })
        }
    })
    .await
    .unwrap()
    .expect_err("a missing vhost fails the run");
    assert!(format!("{err:#}").contains("530"), "{err:#}");
    broker.shutdown().await;
}

/// The loopback relay (`warren relay`) that measures the load tool's own ceiling carries
/// full AMQP runs (confirms, manual acks, several queues) and an MQTT QoS 1 run end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_carries_amqp_and_mqtt_runs() {
    let relay = perf::relay::start(&perf::relay::RelayOptions {
        bind: "127.0.0.1".parse().expect("loopback"),
        amqp_port: 0,
        mqtt_port: 0,
    })
    .await
    .expect("relay starts");
    // Twice on the same queue names: the second run must not lose messages to the first
    // run's closed consumers.
    for _ in 0..2 {
        let amqp = run(Options {
            uri: amqp_uri(relay.amqp_addr),
            count: Some(1000),
            producers: 2,
            consumers: 2,
            queues: 2,
            size: 256,
            confirm: Some(50),
            prefetch: 20,
            ..quiet()
        })
        .await;
        assert_eq!(amqp.published, 2000);
        assert_eq!(amqp.confirmed, 2000);
        assert_eq!((amqp.consumed, amqp.lost), (2000, 0));
    }
    let mqtt = run(Options {
        uri: mqtt_uri(relay.mqtt_addr),
        count: Some(1000),
        qos: 1,
        size: 64,
        ..quiet()
    })
    .await;
    assert_eq!((mqtt.published, mqtt.consumed, mqtt.lost), (1000, 1000, 0));
}

/// A broker with every TLS and WebSocket listener on an ephemeral port, and the directory
/// holding its certificates (kept alive for the test; `ca_certificate.pem` is the CA).
async fn tls_broker() -> (TestBroker, tempfile::TempDir) {
    let certs = tempfile::tempdir().expect("a certificate directory");
    let generated =
        warren::tls::generate::generate(certs.path(), &["guest"]).expect("certificates");
    let tls = warren::tls::TlsSettings {
        certificate: generated.server_certificate.clone(),
        key: generated.server_key.clone(),
        ca: Some(generated.ca_certificate.clone()),
        verify_peer: false,
        fail_if_no_peer_certificate: false,
    };
    let broker = TestBroker::options()
        .external(External::Never)
        .config(move |c| {
            c.amqps_port = Some(0);
            c.mqtts_port = Some(0);
            c.ws_port = Some(0);
            c.wss_port = Some(0);
            c.tls = Some(tls);
        })
        .start()
        .await;
    (broker, certs)
}

/// The CA the broker's certificate chains to.
fn ca(certs: &tempfile::TempDir) -> Option<std::path::PathBuf> {
    Some(certs.path().join("ca_certificate.pem"))
}

/// AMQPS with the server certificate verified against the CA (for the URI's host,
/// 127.0.0.1, which the generated certificate names): confirms, manual acks, latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_one_producer_one_consumer() {
    let (broker, certs) = tls_broker().await;
    let addr = broker.in_process().amqps_addr().expect("an AMQPS listener");
    let report = run(Options {
        uri: format!("amqps://guest:guest@{addr}/%2f"),
        tls_ca: ca(&certs),
        count: Some(2000),
        size: 64,
        confirm: Some(100),
        prefetch: 50,
        ..quiet()
    })
    .await;
    assert!(report.uri.starts_with("amqps://"), "{}", report.uri);
    assert_eq!(report.published, 2000);
    assert_eq!(report.confirmed, 2000);
    assert_eq!(report.consumed, report.published);
    assert_eq!((report.lost, report.foreign), (0, 0));
    assert_eq!(report.latency.samples, 2000);
    broker.shutdown().await;
}

/// MQTTS QoS 1, verified against the CA, and QoS 0 with --tls-insecure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_qos1_verified_and_qos0_insecure() {
    let (broker, certs) = tls_broker().await;
    let addr = broker.in_process().mqtts_addr().expect("an MQTTS listener");
    let report = run(Options {
        uri: format!("mqtts://{addr}"),
        tls_ca: ca(&certs),
        count: Some(2000),
        size: 64,
        qos: 1,
        ..quiet()
    })
    .await;
    assert!(report.uri.starts_with("mqtts://"), "{}", report.uri);
    assert_eq!(report.published, 2000);
    assert_eq!(report.confirmed, 2000);
    assert_eq!(report.consumed, report.published);
    assert_eq!(report.latency.samples, 2000);
    let report = run(Options {
        uri: format!("mqtts://{addr}"),
        tls_insecure: true,
        count: Some(1000),
        size: 64,
        ..quiet()
    })
    .await;
    assert_eq!(report.published, 1000);
    assert_eq!(report.consumed + report.lost, 1000);
    assert!(report.consumed > 0);
    broker.shutdown().await;
}

/// MQTT over WebSocket, plain (`ws://`, default path /ws) and over TLS (`wss://` with an
/// explicit /ws path): QoS 1 and QoS 2 runs deliver every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_ws_and_wss() {
    let (broker, certs) = tls_broker().await;
    let ws = broker.in_process().ws_addr().expect("a WebSocket listener");
    let wss = broker.in_process().wss_addr().expect("a WSS listener");
    let report = run(Options {
        uri: format!("ws://{ws}"),
        count: Some(2000),
        size: 64,
        qos: 1,
        ..quiet()
    })
    .await;
    assert_eq!(report.uri, format!("ws://{ws}/ws"));
    assert_eq!(report.published, 2000);
    assert_eq!(report.confirmed, 2000);
    assert_eq!(report.consumed, report.published);
    assert_eq!(report.latency.samples, 2000);
    let report = run(Options {
        uri: format!("wss://{wss}/ws"),
        tls_ca: ca(&certs),
        consumers: 2,
        count: Some(500),
        size: 300,
        qos: 2,
        ..quiet()
    })
    .await;
    assert!(report.uri.starts_with("wss://"), "{}", report.uri);
    assert_eq!(report.published, 500);
    assert_eq!(report.confirmed, 500);
    assert_eq!(report.consumed, 1000);
    broker.shutdown().await;
}

/// Idle mode over AMQPS, MQTTS and WSS: every connection opens and stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_over_tls() {
    let (broker, certs) = tls_broker().await;
    let b = broker.in_process();
    let uris = [
        format!("amqps://{}", b.amqps_addr().expect("AMQPS")),
        format!("mqtts://{}", b.mqtts_addr().expect("MQTTS")),
        format!("wss://{}", b.wss_addr().expect("WSS")),
    ];
    for uri in uris {
        let report = run(Options {
            uri: uri.clone(),
            tls_ca: ca(&certs),
            idle: Some(30),
            duration: Some(0.5),
            broker_pid: Some(std::process::id()),
            ..quiet()
        })
        .await;
        let idle = report.idle.expect("idle report");
        assert_eq!(
            (idle.requested, idle.opened, idle.failed, idle.still_open),
            (30, 30, 0, 30),
            "{uri}"
        );
    }
    broker.shutdown().await;
}

/// A server certificate that does not chain to --tls-ca fails the run at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_untrusted_ca_fails_the_run() {
    let (broker, certs) = tls_broker().await;
    let other = warren::tls::generate::generate(&certs.path().join("other"), &["guest"])
        .expect("a second CA");
    let addr = broker.in_process().amqps_addr().expect("an AMQPS listener");
    let err = tokio::task::spawn_blocking(move || {
        perf::run(&Options {
            uri: format!("amqps://guest:guest@{addr}/%2f"),
            tls_ca: Some(other.ca_certificate),
            count: Some(10),
            ..quiet()
        })
    })
    .await
    .unwrap()
    .expect_err("an untrusted server certificate fails the run");
    assert!(format!("{err:#}").contains("TLS handshake"), "{err:#}");
    broker.shutdown().await;
}
