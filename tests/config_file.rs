//! `warren --config FILE` as an operator uses it: the repository's `warren.conf.example` (its
//! ports moved to free ones) starts a broker with those listeners, flags override the file,
//! and a file with an unknown key or a bad value stops warren naming the file and the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sample file with `key = value` lines replaced where `changes` says.
fn sample_with(changes: &[(&str, String)]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = std::fs::read_to_string(root.join("warren.conf.example")).unwrap();
    sample
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            match changes.iter().find(|(changed, _)| *changed == key) {
                Some((key, value)) => format!("{key} = {value}"),
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn warren(config: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--config")
        .arg(config)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the warren binary starts")
}

/// Reads the broker's log until every address in `expected` has a "listener started" line.
async fn wait_for_listeners(child: &mut Child, expected: &[SocketAddr]) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            let started: Vec<&String> = seen
                .iter()
                .filter(|line| line.contains("listener started"))
                .collect();
            if expected.iter().all(|address| {
                started
                    .iter()
                    .any(|line| line.contains(&address.to_string()))
            }) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "not every listener started: {seen:#?}"
    );
    seen
}

#[tokio::test]
async fn the_sample_configuration_starts_its_listeners_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let (amqp, mqtt, ws, prometheus) = (free_port(), free_port(), free_port(), free_port());
    let management = free_port();
    let config = dir.path().join("warren.conf");
    std::fs::write(
        &config,
        sample_with(&[
            ("listeners.tcp.default", format!("127.0.0.1:{amqp}")),
            ("mqtt.listeners.tcp.default", mqtt.to_string()),
            ("web_mqtt.tcp.port", ws.to_string()),
            ("prometheus.tcp.port", prometheus.to_string()),
            ("management.tcp.port", management.to_string()),
            ("data_dir", dir.path().join("data").display().to_string()),
        ]),
    )
    .unwrap();
    let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    let mut broker = warren(&config, &[]);
    let log = wait_for_listeners(
        &mut broker,
        &[
            address(amqp),
            address(mqtt),
            address(ws),
            address(prometheus),
        ],
    )
    .await;
    assert!(
        log.iter().all(|line| !line.contains('\u{1b}')),
        "colour codes in a log that is not a terminal: {log:#?}"
    );
    let uri = format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f");
    let connection = common::within(
        "AMQP connect to the configured port",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("AMQP on the configured listener");
    connection.close(200, "bye").await.unwrap();
    let metrics = common::http::get(address(prometheus), "/metrics")
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    broker.kill().await.unwrap();

    // A flag wins over the file.
    let flag_port = free_port();
    let mut broker = warren(&config, &["--amqp-port", &flag_port.to_string()]);
    wait_for_listeners(&mut broker, &[address(flag_port), address(mqtt)]).await;
    broker.kill().await.unwrap();
}

async fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warren.conf");
    std::fs::write(&config, text).unwrap();
    let broker = warren(&config, &[]);
    let output = tokio::time::timeout(Duration::from_secs(30), broker.wait_with_output())
        .await
        .expect("warren stops by itself")
        .unwrap();
    assert!(!output.status.success(), "warren started with {text:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(&config.display().to_string()),
        "the error names the file: {stderr}"
    );
    stderr
}

#[tokio::test]
async fn an_unknown_key_or_a_bad_value_refuses_to_start_naming_the_line() {
    let stderr = refused("heartbeat = 30\n# a comment\nheartbeet = 30\n").await;
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("unknown key `heartbeet`"), "{stderr}");
    let stderr = refused("listeners.tcp.default = 5672\nframe_max = large\n").await;
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("frame_max = large"), "{stderr}");
}

#[tokio::test]
async fn a_port_conflict_names_the_flag_and_the_key() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warren.conf");
    std::fs::write(
        &config,
        sample_with(&[
            ("listeners.tcp.default", format!("127.0.0.1:{port}")),
            ("mqtt.listeners.tcp.default", "0".into()),
            ("web_mqtt.tcp.port", "0".into()),
            ("prometheus.tcp.port", "0".into()),
            ("management.tcp.port", "0".into()),
            ("data_dir", dir.path().join("data").display().to_string()),
        ]),
    )
    .unwrap();
    let broker = warren(&config, &[]);
    let output = tokio::time::timeout(Duration::from_secs(30), broker.wait_with_output())
        .await
        .expect("warren stops by itself")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--amqp-port") && stderr.contains("listeners.tcp.default"),
        "{stderr}"
    );
    drop(taken);
}

#[tokio::test]
async fn default_user_and_password_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (amqp, mqtt) = (free_port(), free_port());
    let config = dir.path().join("warren.conf");
    std::fs::write(
        &config,
        sample_with(&[
            ("listeners.tcp.default", format!("127.0.0.1:{amqp}")),
            ("mqtt.listeners.tcp.default", mqtt.to_string()),
            ("web_mqtt.tcp.port", "0".into()),
            ("prometheus.tcp.port", "0".into()),
            ("management.tcp.port", "0".into()),
            ("default_user", "admin".into()),
            ("default_pass", "s3cret".into()),
            ("data_dir", dir.path().join("data").display().to_string()),
        ]),
    )
    .unwrap();
    let mut broker = warren(&config, &[]);
    let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_listeners(&mut broker, &[address(amqp), address(mqtt)]).await;
    let connect = |user: &str, password: &str| {
        let uri = format!("amqp://{user}:{password}@127.0.0.1:{amqp}/%2f");
        async move { Connection::connect(&uri, ConnectionProperties::default()).await }
    };
    let admin = common::within("AMQP login as admin", connect("admin", "s3cret"))
        .await
        .expect("the configured user logs in");
    admin.close(200, "bye").await.unwrap();
    let refused = common::within("AMQP login as guest", connect("guest", "guest")).await;
    assert!(refused.is_err(), "guest is not a user any more");
    let wrong = common::within("AMQP login, wrong password", connect("admin", "guest")).await;
    assert!(wrong.is_err());
    broker.kill().await.unwrap();
}

/// `default_vhost` names the vhost of a fresh node (the default user gets full permissions
/// there), `load_definitions` imports a definitions file at start (its users log in with
/// their passwords), and `mqtt.vhost` is where MQTT users without a `vhost:` prefix land.
#[tokio::test]
async fn default_vhost_mqtt_vhost_and_load_definitions_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (amqp, mqtt) = (free_port(), free_port());
    let hash = warren::auth::encode_hash(&warren::auth::hash_password(b"dave-pw", [1, 2, 3, 4]));
    let definitions = serde_json::json!({
        "users": [{"name": "dave", "password_hash": hash,
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"]}],
        "vhosts": [{"name": "plant"}],
        "permissions": [{"user": "dave", "vhost": "plant", "configure": ".*", "write": ".*", "read": ".*"}],
        "queues": [{"name": "line-1", "vhost": "plant", "durable": true, "auto_delete": false, "arguments": {}}],
    });
    let definitions_path = dir.path().join("definitions.json");
    std::fs::write(&definitions_path, definitions.to_string()).unwrap();
    let config = dir.path().join("warren.conf");
    let mut text = sample_with(&[
        ("listeners.tcp.default", format!("127.0.0.1:{amqp}")),
        ("mqtt.listeners.tcp.default", mqtt.to_string()),
        ("web_mqtt.tcp.port", "0".into()),
        ("prometheus.tcp.port", "0".into()),
        ("management.tcp.port", "0".into()),
        ("default_vhost", "edge".into()),
        ("mqtt.vhost", "plant".into()),
        ("data_dir", dir.path().join("data").display().to_string()),
    ]);
    text.push_str(&format!(
        "\nload_definitions = {}\n",
        definitions_path.display()
    ));
    std::fs::write(&config, text).unwrap();
    let mut broker = warren(&config, &[]);
    let address = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_listeners(&mut broker, &[address(amqp), address(mqtt)]).await;
    let connect = |user: &str, password: &str, vhost: &str| {
        let uri = format!("amqp://{user}:{password}@127.0.0.1:{amqp}/{vhost}");
        async move { Connection::connect(&uri, ConnectionProperties::default()).await }
    };
    let guest = common::within("guest in edge", connect("guest", "guest", "edge"))
        .await
        .expect("the default user has the default vhost");
    guest.close(200, "bye").await.unwrap();
    let default_vhost = common::within("guest in /", connect("guest", "guest", "%2f")).await;
    assert!(
        default_vhost.is_err(),
        "/ is not created when default_vhost names another"
    );
    let dave = common::within("dave in plant", connect("dave", "dave-pw", "plant"))
        .await
        .expect("an imported user logs in with the password behind its hash");
    let channel = dave.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare("line-1", passive, lapin::types::FieldTable::default())
        .await
        .expect("the imported queue exists");
    dave.close(200, "bye").await.unwrap();
    // MQTT: "dave" without a vhost prefix lands in mqtt.vhost, where he has permissions.
    let mut options = rumqttc::MqttOptions::new("dave-device", "127.0.0.1", mqtt);
    options.set_credentials("dave", "dave-pw");
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let connack = common::within("CONNACK", events.poll()).await.unwrap();
    assert!(
        matches!(
            connack,
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(rumqttc::ConnAck {
                code: rumqttc::ConnectReturnCode::Success,
                ..
            }))
        ),
        "{connack:?}"
    );
    drop(client);
    broker.kill().await.unwrap();
}

/// A `load_definitions` file that does not parse stops warren at start, naming the file.
#[tokio::test]
async fn a_bad_definitions_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let definitions_path = dir.path().join("broken.json");
    std::fs::write(&definitions_path, "{ not json").unwrap();
    let config = dir.path().join("warren.conf");
    let mut text = sample_with(&[
        ("listeners.tcp.default", free_port().to_string()),
        ("mqtt.listeners.tcp.default", free_port().to_string()),
        ("web_mqtt.tcp.port", "0".into()),
        ("prometheus.tcp.port", "0".into()),
        ("management.tcp.port", "0".into()),
        ("data_dir", dir.path().join("data").display().to_string()),
    ]);
    text.push_str(&format!(
        "\nload_definitions = {}\n",
        definitions_path.display()
    ));
    std::fs::write(&config, text).unwrap();
    let output = common::within(
        "warren to refuse",
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--config")
            .arg(&config)
            .output(),
    )
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("load_definitions") && stderr.contains("broken.json"),
        "{stderr}"
    );
}
