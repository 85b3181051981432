//! The Grafana dashboards show data for warren: a real Prometheus server (Debian's `prometheus`
//! package, 2.42) scrapes warren's Prometheus endpoint every second while AMQP and MQTT clients
//! work the broker, and then every query of every panel in `grafana/dashboards/*.json`, and in
//! RabbitMQ's own "RabbitMQ-Overview" dashboard (grafana.com id 10991; its file is third-party
//! and not part of this repository: see [`RABBITMQ_DASHBOARD`]), returns data.
//! What a user observes: with warren scraped by Prometheus and the dashboards provisioned into
//! Grafana, no panel says "No data" and the cluster and endpoint pickers are filled in.
//!
//! The test starts warren in-process (every listener on 127.0.0.1 port 0, the Prometheus
//! endpoint too) and `prometheus` as a child process with its own configuration and storage in a
//! temporary directory, on a free port. Prometheus has two jobs: `warren` (`/metrics`) and
//! `warren-detailed` (`/metrics/detailed` with the queue families). For about 20 s the clients
//! publish with and without confirms, consume with manual and automatic acks, poll with
//! `basic.get` (empty gets too), publish unroutable messages (mandatory: returned; not:
//! dropped), open and close channels, queues and connections, and publish over MQTT 3.1.1 and
//! 5.0 at QoS 0, 1 and 2 (a retained message, a will from a dropped connection); so that the
//! dashboards' `rate()` and `irate()` over one minute see rising counters. At the end messages
//! are left ready and unacknowledged, with a consumer and a publisher still connected.
//!
//! `tests/python/check_dashboards.py` (standard library only) then evaluates every panel
//! expression and every templating variable through Prometheus's HTTP API, checks the
//! repository's dashboards' structure and their datasource uid (the one provisioned in
//! `grafana/provisioning/datasources/`), prints one line per expression and fails listing every
//! expression without data. The test shows that output.
//!
//! Needs `prometheus` on PATH (`apt-get install prometheus`; `WARREN_TEST_PROMETHEUS` may name
//! another binary); without it the test fails, it is never skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mqtt_support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use mqtt_support::common::{self, python};
use mqtt_support::{
    amqp_key, options3, options5, unique_id, unique_topic, within, within_for, Client3, Client5,
    External, QoS5, TestBroker,
};

/// Environment variable naming the Prometheus binary (default: `prometheus` from PATH).
const PROMETHEUS_BIN: &str = "WARREN_TEST_PROMETHEUS";

/// Environment variable naming RabbitMQ's RabbitMQ-Overview dashboard file. The file is
/// RabbitMQ's (MPL 2.0) and is not copied into this repository; CI keeps it in the reference
/// data directory beside the checkout, the default below.
const RABBITMQ_DASHBOARD: &str = "WARREN_RABBITMQ_DASHBOARD";

/// Where CI keeps that file, relative to the crate.
const RABBITMQ_DASHBOARD_DEFAULT: &str = "../shared/reference/grafana/RabbitMQ-Overview.json";

/// How long the clients keep traffic going while Prometheus scrapes every second: enough for
/// `rate(...[1m])` and `irate` to see many samples with increases.
const TRAFFIC: Duration = Duration::from_secs(20);

/// One round of traffic per this much time.
const ROUND: Duration = Duration::from_millis(200);

/// The manual-ack consumer's prefetch: how many messages stay unacknowledged at the end.
const PREFETCH: u16 = 20;

/// Message sizes, cycled, so that several buckets of `rabbitmq_message_size_bytes` fill.
const SIZES: [usize; 4] = [16, 200, 2_000, 20_000];

/// The largest MQTT payload published (rumqttc's default packet limit is 10 KiB).
const MQTT_PAYLOAD_MAX: usize = 8_000;

/// How long Prometheus may take to start, to scrape both jobs, or to scrape the final state.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(30);

/// How long the checker script may take.
const CHECKER_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboards_have_data_for_every_query() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::env::var_os(RABBITMQ_DASHBOARD)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(RABBITMQ_DASHBOARD_DEFAULT));
    assert!(
        reference.is_file(),
        "{} is missing: set {RABBITMQ_DASHBOARD} to RabbitMQ's RabbitMQ-Overview.json \
         (grafana.com dashboard 10991)",
        reference.display()
    );
    let binary = prometheus_binary().await;

    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.prometheus_port = Some(0))
        .start()
        .await;
    let metrics_addr = broker.prometheus_addr();
    let cluster = cluster_name(metrics_addr).await;

    let prometheus = Prometheus::start(&binary, metrics_addr).await;
    prometheus.wait_until_up().await;

    let held = drive_traffic(&broker).await;
    let mut problems = prometheus.wait_for_final_state().await;

    let dashboards = repository_dashboards(root);
    if dashboards.is_empty() {
        problems.push("grafana/dashboards/ holds no *.json dashboard".to_string());
    }
    let datasource_uid = match provisioned_datasource_uid(root) {
        Ok(uid) => Some(uid),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let (success, output) = run_checker(
        &prometheus.url(),
        &cluster,
        datasource_uid.as_deref(),
        &dashboards,
        &reference,
    )
    .await;
    if success && problems.is_empty() {
        // On failure the output goes into the panic message instead (not twice).
        println!("{output}");
    }

    held.close().await;
    prometheus.stop().await;
    broker.shutdown().await;

    assert!(
        success && problems.is_empty(),
        "the dashboards do not all have data against Prometheus scraping warren:\n{}\n\
         check_dashboards.py {}:\n{output}",
        problems.join("\n"),
        if success { "passed" } else { "failed" },
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// The Prometheus binary, checked to run; fails the test (with how to install it) if it does not.
async fn prometheus_binary() -> PathBuf {
    let binary = std::env::var_os(PROMETHEUS_BIN)
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"));
    let version = within(
        "prometheus --version",
        Command::new(&binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output(),
    )
    .await;
    match version {
        Ok(output) if output.status.success() => binary,
        Ok(output) => panic!(
            "{} --version failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!(
            "cannot run {} ({e}): this test needs a Prometheus server; on Debian/Ubuntu \
             `apt-get install prometheus` (or set {PROMETHEUS_BIN} to a prometheus binary)",
            binary.display()
        ),
    }
}

/// A `prometheus` child process scraping warren, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Configuration, storage and log; removed after the process is gone.
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes the configuration and starts Prometheus on a free loopback port (another port if
    /// that one was taken meanwhile), waiting until it is ready.
    async fn start(binary: &Path, warren: SocketAddr) -> Prometheus {
        let mut dir = tempfile::tempdir().expect("a temporary directory for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(warren)).expect("write prometheus.yml");
        let mut attempts = Vec::new();
        for attempt in 1..=5 {
            let addr = free_port();
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let file = std::fs::File::create(&log).expect("create the Prometheus log");
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("clone the log file handle"))
                .stderr(file)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            let mut prometheus = Prometheus {
                child,
                addr,
                log,
                _dir: dir,
            };
            match prometheus.ready().await {
                Ok(()) => return prometheus,
                Err(text) if text.contains("address already in use") => {
                    attempts.push(format!("{addr}: address already in use"));
                    let _ = prometheus.child.start_kill();
                    let _ = within("prometheus to exit", prometheus.child.wait()).await;
                    dir = prometheus._dir;
                }
                Err(text) => panic!("Prometheus did not start:\n{text}"),
            }
        }
        panic!("Prometheus found no free port: {attempts:?}");
    }

    /// Waits until `/-/ready` answers; on failure returns what went wrong and the log.
    async fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited ({status}); log:\n{}",
                    self.log()
                ));
            }
            if let Ok((200, body)) = http_get(self.addr, "/-/ready").await {
                if body.contains("Ready") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus not ready on {} after {PROMETHEUS_WAIT:?}; log:\n{}",
                    self.addr,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `data.result` of an instant query; panics on an error answer.
    async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let target = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = http_get(self.addr, &target)
            .await
            .unwrap_or_else(|e| panic!("Prometheus query {promql:?}: {e}"));
        let answer: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Prometheus answered {status} {body:?}: {e}"));
        assert_eq!(
            answer["status"], "success",
            "Prometheus query {promql:?}: {body}"
        );
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of the single-series query `promql`, if it has one.
    async fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await;
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until Prometheus has scraped both jobs successfully (`up` is 1 for each).
    async fn wait_until_up(&self) {
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        loop {
            let up = self.query("up").await;
            let is_up = |job: &str| {
                up.iter()
                    .any(|series| series["metric"]["job"] == job && series["value"][1] == "1")
            };
            if is_up("warren") && is_up("warren-detailed") {
                return;
            }
            if Instant::now() > deadline {
                let targets = http_get(self.addr, "/api/v1/targets")
                    .await
                    .map(|(_, body)| body)
                    .unwrap_or_else(|e| e.to_string());
                panic!(
                    "Prometheus did not scrape both jobs within {PROMETHEUS_WAIT:?}; up: {up:?}\n\
                     targets: {targets}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until Prometheus has scraped the final state (messages unacknowledged and ready,
    /// the AMQP channels, consumers and publishers still there); returns what it did not see.
    async fn wait_for_final_state(&self) -> Vec<String> {
        let checks = [
            (
                "sum(rabbitmq_queue_messages_unacked{job=\"warren\"})",
                f64::from(PREFETCH),
            ),
            ("sum(rabbitmq_queue_messages_ready{job=\"warren\"})", 1.0),
            // The six AMQP channels of the publisher and the consumer connection.
            ("sum(rabbitmq_channels{job=\"warren\"})", 6.0),
            (
                "sum(rabbitmq_global_consumers{job=\"warren\",protocol=\"amqp091\"})",
                2.0,
            ),
            (
                "sum(rabbitmq_global_publishers{job=\"warren\",protocol=\"amqp091\"})",
                1.0,
            ),
        ];
        let deadline = Instant::now() + PROMETHEUS_WAIT;
        loop {
            let mut missing = Vec::new();
            for (promql, at_least) in checks {
                let value = self.value(promql).await;
                if !value.is_some_and(|v| v >= at_least) {
                    missing.push(format!(
                        "Prometheus never saw {promql} >= {at_least} (last value {value:?})"
                    ));
                }
            }
            if missing.is_empty() || Instant::now() > deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the process (by its pid) and waits for it.
    async fn stop(mut self) {
        self.child
            .start_kill()
            .expect("SIGKILL is sent to prometheus");
        within("prometheus to exit", self.child.wait())
            .await
            .expect("wait for prometheus");
    }
}

/// Prometheus's configuration: every second, `/metrics` as job `warren` and the detailed queue
/// families as job `warren-detailed`, both from warren's endpoint.
fn scrape_config(warren: SocketAddr) -> String {
    format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: warren
    metrics_path: /metrics
    static_configs:
      - targets: ['{warren}']
  - job_name: warren-detailed
    metrics_path: /metrics/detailed
    params:
      family: [queue_coarse_metrics, queue_consumer_count, queue_metrics]
    static_configs:
      - targets: ['{warren}']
"
    )
}

/// A loopback port nothing listens on right now (bound and released; Prometheus is retried on
/// another if someone takes it meanwhile).
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

// ---------------------------------------------------------------------------------------------
// HTTP, warren's identity, the dashboards and the checker
// ---------------------------------------------------------------------------------------------

/// `GET target`: `(status, body)`.
async fn http_get(addr: SocketAddr, target: &str) -> std::io::Result<(u16, String)> {
    let response = common::http::get(addr, target).await?;
    Ok((response.status, response.body))
}

/// `promql` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `rabbitmq_cluster` label of `rabbitmq_identity_info` on warren's `/metrics`.
async fn cluster_name(metrics: SocketAddr) -> String {
    let (status, body) = http_get(metrics, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("GET http://{metrics}/metrics: {e}"));
    assert_eq!(status, 200, "GET /metrics: {body}");
    let line = body
        .lines()
        .find(|line| line.starts_with("rabbitmq_identity_info{"))
        .unwrap_or_else(|| panic!("no rabbitmq_identity_info on /metrics:\n{body}"));
    let start = line
        .find("rabbitmq_cluster=\"")
        .unwrap_or_else(|| panic!("no rabbitmq_cluster label in {line:?}"))
        + "rabbitmq_cluster=\"".len();
    let end = line[start..]
        .find('"')
        .unwrap_or_else(|| panic!("unterminated rabbitmq_cluster label in {line:?}"));
    line[start..start + end].to_string()
}

/// Every `grafana/dashboards/*.json`, sorted.
fn repository_dashboards(root: &Path) -> Vec<PathBuf> {
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(root.join("grafana/dashboards"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect()
        })
        .unwrap_or_default();
    dashboards.sort();
    dashboards
}

/// The uid of the Prometheus datasource `grafana/provisioning/datasources/*.yaml` provisions
/// (a line scan of Grafana's flat provisioning format: a list of `- name: …` items with
/// `type:` and `uid:` keys).
fn provisioned_datasource_uid(root: &Path) -> Result<String, String> {
    let dir = root.join("grafana/provisioning/datasources");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    let mut uids = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        // (type, uid) of each list item.
        let mut items: Vec<(Option<String>, Option<String>)> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            let (starts_item, pair) = match trimmed.strip_prefix("- ") {
                Some(rest) => (true, rest.trim_start()),
                None => (false, trimmed),
            };
            if starts_item {
                items.push((None, None));
            }
            let Some((key, value)) = pair.split_once(':') else {
                continue;
            };
            let value = value
                .split(" #")
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string();
            if let Some(item) = items.last_mut() {
                match key.trim() {
                    "type" => item.0 = Some(value),
                    "uid" => item.1 = Some(value),
                    _ => {}
                }
            }
        }
        uids.extend(
            items
                .into_iter()
                .filter(|(kind, _)| kind.as_deref() == Some("prometheus"))
                .filter_map(|(_, uid)| uid),
        );
    }
    match uids.as_slice() {
        [uid] => Ok(uid.clone()),
        [] => Err(format!(
            "no Prometheus datasource with a uid in {}/*.yaml ({} files)",
            dir.display(),
            files.len()
        )),
        _ => Err(format!(
            "several Prometheus datasources provisioned in {}: {uids:?}",
            dir.display()
        )),
    }
}

/// Runs `tests/python/check_dashboards.py`; (exited 0, stdout and stderr).
async fn run_checker(
    prometheus: &str,
    cluster: &str,
    datasource_uid: Option<&str>,
    dashboards: &[PathBuf],
    reference: &Path,
) -> (bool, String) {
    let python = python::interpreter();
    let script = python::scripts_dir().join("check_dashboards.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .arg(prometheus)
        .args(["--cluster", cluster]);
    if let Some(uid) = datasource_uid {
        command.args(["--datasource-uid", uid]);
    }
    for dashboard in dashboards {
        command.arg("--dashboard").arg(dashboard);
    }
    command.arg("--reference").arg(reference);
    let child = command
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
    let output = within_for(
        CHECKER_TIMEOUT,
        "check_dashboards.py",
        child.wait_with_output(),
    )
    .await
    .unwrap_or_else(|e| panic!("{} runs: {e}", python.display()));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        text.push_str("\n--- stderr\n");
        text.push_str(&stderr);
    }
    (output.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

/// What stays connected while the dashboards are checked: a publisher, a consumer holding
/// unacknowledged messages, MQTT clients.
struct Held {
    publisher: Connection,
    consumer: Connection,
    /// lapin closes a channel when its last handle goes.
    channels: Vec<Channel>,
    mqtt: Vec<Client3>,
    mqtt5: Vec<Client5>,
    tasks: Vec<JoinHandle<()>>,
}

impl Held {
    async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        drop(self.channels);
        for client in self.mqtt {
            client.disconnect().await;
        }
        for client in self.mqtt5 {
            client.disconnect().await;
        }
        common::close(self.publisher).await;
        common::close(self.consumer).await;
    }
}

/// Declares a queue; durable ones survive a restart and take persistent messages to the store.
async fn declare(ch: &Channel, prefix: &str, durable: bool) -> String {
    let name = common::unique(prefix);
    within(
        "queue.declare",
        ch.queue_declare(
            &name,
            QueueDeclareOptions {
                durable,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.declare-ok");
    name
}

/// Publishes on a channel without confirms (the message is only sent).
async fn publish_unconfirmed(ch: &Channel, queue: &str, body: &[u8]) {
    within(
        "basic.publish",
        ch.basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        ),
    )
    .await
    .expect("basic.publish is sent");
}

/// Publishes a message no queue is bound for to `amq.direct` and waits for the confirm:
/// mandatory ones come back with `basic.return`, the others are dropped.
async fn publish_unroutable(ch: &Channel, mandatory: bool) {
    let confirm = within(
        "unroutable basic.publish",
        ch.basic_publish(
            "amq.direct",
            "warren-test.prometheus.nowhere",
            BasicPublishOptions {
                mandatory,
                ..BasicPublishOptions::default()
            },
            b"unroutable",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("basic.publish is sent");
    let confirmation = within("publisher confirm", confirm)
        .await
        .expect("publisher confirm arrives");
    assert!(
        confirmation.is_ack(),
        "unroutable publish not acked: {confirmation:?}"
    );
}

/// `basic.get`; acks manually unless `no_ack`. Whether a message came.
async fn get(ch: &Channel, queue: &str, no_ack: bool) -> bool {
    let message = within("basic.get", ch.basic_get(queue, BasicGetOptions { no_ack }))
        .await
        .expect("basic.get answered");
    match message {
        Some(message) if !no_ack => {
            within(
                "basic.ack",
                message.delivery.acker.ack(BasicAckOptions::default()),
            )
            .await
            .expect("basic.ack is sent");
            true
        }
        Some(_) => true,
        None => false,
    }
}

/// Runs the workload for [`TRAFFIC`] and leaves the final state: messages ready in queues,
/// [`PREFETCH`] unacknowledged with a consumer, a publisher connected.
async fn drive_traffic(broker: &TestBroker) -> Held {
    // AMQP: a publisher connection (one channel with confirms, one without) and a consumer
    // connection.
    let publisher = common::connect(broker).await;
    let confirm = common::confirm_channel(&publisher).await;
    let plain = common::channel(&publisher).await;
    let consumer = common::connect(broker).await;
    let setup = common::channel(&consumer).await;
    let work = declare(&setup, "prom-work", false).await;
    let auto = declare(&setup, "prom-auto", false).await;
    let backlog = declare(&setup, "prom-backlog", false).await;
    let polled = declare(&setup, "prom-get", false).await;
    let durable = declare(&setup, "prom-durable", true).await;

    // MQTT: topics under one prefix; an AMQP queue (no consumer) collects them too.
    let base = unique_topic("prometheus");
    let from_mqtt = declare(&setup, "prom-from-mqtt", false).await;
    within(
        "queue.bind",
        setup.queue_bind(
            &from_mqtt,
            "amq.topic",
            &format!("{}.#", amqp_key(&base)),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.bind-ok");

    // A manual-ack consumer with a prefetch: acks (every tenth delivery is nacked and
    // requeued, so some are redelivered) until told to stop, then holds what it gets.
    let manual_ch = common::channel(&consumer).await;
    within(
        "basic.qos",
        manual_ch.basic_qos(PREFETCH, BasicQosOptions::default()),
    )
    .await
    .expect("basic.qos-ok");
    let mut manual = common::consume(&manual_ch, &work).await;
    let acking = Arc::new(AtomicBool::new(true));
    let unacked = Arc::new(AtomicUsize::new(0));
    let manual_task = {
        let acking = acking.clone();
        let unacked = unacked.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            let mut n = 0u64;
            while let Some(Ok(delivery)) = manual.next().await {
                n += 1;
                if !acking.load(Ordering::SeqCst) {
                    held.push(delivery);
                    unacked.store(held.len(), Ordering::SeqCst);
                    continue;
                }
                let sent = if n.is_multiple_of(10) {
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await
                } else {
                    delivery.ack(BasicAckOptions::default()).await
                };
                if sent.is_err() {
                    break;
                }
            }
        })
    };
    // An auto-ack consumer.
    let auto_ch = common::channel(&consumer).await;
    let mut auto_consumer = within(
        "basic.consume",
        auto_ch.basic_consume(
            &auto,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume-ok");
    let auto_task =
        tokio::spawn(async move { while let Some(Ok(_)) = auto_consumer.next().await {} });
    let get_ch = common::channel(&consumer).await;

    // MQTT 3.1.1 and 5.0 subscribers and publishers, a retained message, an offline persistent
    // session, and a will published when its client's connection drops.
    let mqtt = broker.mqtt_addr();
    let mut sub3 = Client3::connect(mqtt, &unique_id("prom-sub3")).await;
    sub3.subscribe(&format!("{base}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    let mut sub5 = Client5::connect(mqtt, &unique_id("prom-sub5")).await;
    sub5.subscribe(&format!("{base}/#"), QoS5::AtMostOnce).await;
    let mut pub3 = Client3::connect(mqtt, &unique_id("prom-pub3")).await;
    let mut pub5 = Client5::connect(mqtt, &unique_id("prom-pub5")).await;
    pub3.publish(
        &format!("{base}/retained/status"),
        rumqttc::QoS::AtLeastOnce,
        true,
        "online",
    )
    .await;
    let mut persistent = options3(mqtt, &unique_id("prom-persistent"));
    persistent.set_clean_session(false);
    let mut offline = Client3::connect_with(persistent).await;
    offline
        .subscribe(&format!("{base}/#"), rumqttc::QoS::AtLeastOnce)
        .await;
    offline.disconnect().await;
    let mut will = options3(mqtt, &unique_id("prom-will"));
    will.set_last_will(rumqttc::LastWill::new(
        format!("{base}/will"),
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    Client3::connect_with(will).await.kill().await;

    let start = Instant::now();
    let mut ticks = tokio::time::interval(ROUND);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0usize;
    while start.elapsed() < TRAFFIC {
        ticks.tick().await;
        round += 1;
        let body = vec![b'w'; SIZES[round % SIZES.len()]];
        // Confirmed and unconfirmed publishes to the consumed queues.
        for _ in 0..3 {
            common::publish(&confirm, "", &work, &body).await;
        }
        common::publish(&confirm, "", &auto, &body).await;
        publish_unconfirmed(&plain, &auto, &body).await;
        publish_unconfirmed(&plain, &work, &body).await;
        // Persistent messages to a durable queue (to the store); some left ready elsewhere.
        common::publish_with(
            &confirm,
            "",
            &durable,
            &body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
        if round.is_multiple_of(5) {
            common::publish(&confirm, "", &backlog, &body).await;
        }
        // Unroutable: returned (mandatory) and dropped.
        publish_unroutable(&confirm, true).await;
        publish_unroutable(&confirm, false).await;
        // basic.get: with a manual ack, with auto-ack, then an empty get.
        common::publish(&confirm, "", &polled, &body).await;
        common::publish(&confirm, "", &polled, &body).await;
        assert!(get(&get_ch, &polled, false).await, "basic.get (manual ack)");
        assert!(get(&get_ch, &polled, true).await, "basic.get (auto-ack)");
        assert!(!get(&get_ch, &polled, true).await, "basic.get-empty");
        // MQTT at QoS 0 and 1 (and 2 now and then), 3.1.1 and 5.0; rumqttc's packets are at
        // most 10 KiB.
        let topic = format!("{base}/sensor/{}", round % 4);
        let body = body[..body.len().min(MQTT_PAYLOAD_MAX)].to_vec();
        pub3.publish(&topic, rumqttc::QoS::AtMostOnce, false, body.clone())
            .await;
        pub3.publish(&topic, rumqttc::QoS::AtLeastOnce, false, body.clone())
            .await;
        pub5.publish(&topic, QoS5::AtLeastOnce, false, body.clone())
            .await;
        if round.is_multiple_of(5) {
            pub3.publish(&topic, rumqttc::QoS::ExactlyOnce, false, b"qos2".to_vec())
                .await;
            pub5.publish(&topic, QoS5::AtMostOnce, false, b"v5 qos0".to_vec())
                .await;
        }
        while sub3.try_recv().is_some() {}
        while sub5.try_recv().is_some() {}
        // Churn: channels and queues come and go, connections open and close.
        if round.is_multiple_of(5) {
            let ch = common::channel(&publisher).await;
            let temporary = declare(&ch, "prom-temporary", false).await;
            common::delete_queue(&ch, &temporary).await;
            within("channel.close", ch.close(200, "done"))
                .await
                .expect("channel.close-ok");
        }
        if round.is_multiple_of(10) {
            common::close(common::connect(broker).await).await;
            let mut visitor = Client5::connect_with(options5(mqtt, &unique_id("prom-visit"))).await;
            visitor
                .subscribe(&format!("{base}/retained/#"), QoS5::AtLeastOnce)
                .await;
            let retained = visitor.recv().await;
            assert_eq!(&retained.payload[..], b"online", "the retained message");
            visitor.disconnect().await;
        }
    }

    // The final state: the consumer stops acking and fills its prefetch; more wait behind it.
    acking.store(false, Ordering::SeqCst);
    for _ in 0..(PREFETCH + 10) {
        common::publish(&confirm, "", &work, b"left unacknowledged").await;
    }
    within("the consumer to hold its prefetch", async {
        while unacked.load(Ordering::SeqCst) < usize::from(PREFETCH) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Held {
        publisher,
        consumer,
        channels: vec![confirm, plain, setup, manual_ch, auto_ch, get_ch],
        mqtt: vec![sub3, pub3],
        mqtt5: vec![sub5, pub5],
        tasks: vec![manual_task, auto_task],
    }
}
