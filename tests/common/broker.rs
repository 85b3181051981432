//! The one way the tests start a broker: [`TestBroker::start`] with the defaults, or
//! [`TestBroker::options`] and a few builder calls.
//!
//! - By default warren runs in-process on 127.0.0.1 with port 0 for every listener and a
//!   temporary data directory, so tests run in parallel without interfering.
//! - [`External`] says which environment variable may name an already running broker to test
//!   instead (RabbitMQ, Mosquitto): [`EXTERNAL_AMQP`] by default, [`EXTERNAL_MQTT`] (plus
//!   [`EXTERNAL_AMQP`] for the AMQP side) for the MQTT and cross-protocol tests.
//! - [`BrokerOptions::data_dir`]: a data directory the test owns, so that a second broker started
//!   on it must recover what the first left (durability tests).
//! - [`BrokerOptions::config`]: adjusts the in-process configuration.
//! - [`BrokerOptions::process`]: the `warren` binary as a child process instead, its log (stdout
//!   and stderr, ANSI colours stripped) captured line by line. It can be stopped with SIGKILL
//!   ([`TestBroker::kill`], a crash) or SIGTERM ([`TestBroker::terminate`], a graceful stop),
//!   and its resident set size read from `/proc/<pid>/status`.
//!
//! A broker on a test's own data directory, or a child process, is always warren: those tests
//! look at what warren leaves on disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{within, within_for};

/// Environment variable naming an already running AMQP broker (`host:port`) to test instead of
/// an in-process warren (user guest/guest, vhost `/`).
pub(crate) const EXTERNAL_AMQP: &str = "WARREN_TEST_EXTERNAL_AMQP";
/// Environment variable naming an already running MQTT broker (`host:port`) to test instead of
/// an in-process warren (anonymous connects).
pub(crate) const EXTERNAL_MQTT: &str = "WARREN_TEST_EXTERNAL_MQTT";

/// How long a broker may take to start (recovery included) or to stop gracefully.
pub(crate) const START_STOP: Duration = Duration::from_secs(60);

/// Which already running broker a test may run against instead of warren.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum External {
    /// The one [`EXTERNAL_AMQP`] names (the AMQP tests).
    Amqp,
    /// The one [`EXTERNAL_MQTT`] names, with [`EXTERNAL_AMQP`] as its AMQP side if set (the
    /// MQTT and cross-protocol tests).
    Mqtt,
    /// None: always warren.
    Never,
}

type Configure = Box<dyn FnOnce(&mut warren::Config) + Send>;

/// How to start a [`TestBroker`]; see the module docs.
pub(crate) struct BrokerOptions {
    external: External,
    data_dir: Option<PathBuf>,
    configure: Vec<Configure>,
    process: bool,
    args: Vec<String>,
}

impl BrokerOptions {
    /// Which external broker may stand in for warren (default [`External::Amqp`]).
    pub(crate) fn external(mut self, external: External) -> BrokerOptions {
        self.external = external;
        self
    }

    /// Runs warren on `dir` (recovering whatever is there) instead of a fresh temporary
    /// directory; the test owns the directory.
    pub(crate) fn data_dir(mut self, dir: &Path) -> BrokerOptions {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Adjusts the in-process configuration (after the test defaults: loopback, port 0, the
    /// data directory). Not for [`BrokerOptions::process`]; ignored for an external broker.
    pub(crate) fn config(
        mut self,
        configure: impl FnOnce(&mut warren::Config) + Send + 'static,
    ) -> BrokerOptions {
        self.configure.push(Box::new(configure));
        self
    }

    /// Runs the `warren` binary as a child process instead of in-process.
    pub(crate) fn process(mut self) -> BrokerOptions {
        self.process = true;
        self
    }

    /// Extra command-line flags for [`BrokerOptions::process`].
    pub(crate) fn args(mut self, args: &[&str]) -> BrokerOptions {
        self.args.extend(args.iter().map(|arg| arg.to_string()));
        self
    }

    /// Starts the broker and waits until its listeners are up.
    pub(crate) async fn start(self) -> TestBroker {
        let local_only = self.process || self.data_dir.is_some();
        if !local_only {
            if let Some(broker) = external(self.external).await {
                return broker;
            }
        }
        if self.process {
            assert!(
                self.configure.is_empty(),
                "a broker process takes flags (.args), not .config"
            );
            let (dir, data_dir) = data_dir(self.data_dir);
            let process = BrokerProcess::start(&data_dir, &self.args).await;
            return TestBroker {
                amqp: Some(process.amqp),
                mqtt: Some(process.mqtt),
                external: None,
                kind: Kind::Process(Box::new(process)),
                _dir: dir,
            };
        }
        assert!(
            self.args.is_empty(),
            "flags (.args) are for a broker process; use .config in-process"
        );
        let (dir, data_dir) = data_dir(self.data_dir);
        let mut config = warren::Config {
            bind: "127.0.0.1".parse().expect("loopback address"),
            amqp_port: 0,
            mqtt_port: 0,
            data_dir,
            ..warren::Config::default()
        };
        for configure in self.configure {
            configure(&mut config);
        }
        let broker = within_for(
            START_STOP,
            "broker start (recovery)",
            warren::Broker::start(config),
        )
        .await
        .expect("warren starts");
        TestBroker {
            amqp: Some(broker.amqp_addr()),
            mqtt: Some(broker.mqtt_addr()),
            external: None,
            kind: Kind::InProcess(broker),
            _dir: dir,
        }
    }
}

/// The test's own directory, or a fresh temporary one (kept as long as the broker).
fn data_dir(dir: Option<PathBuf>) -> (Option<tempfile::TempDir>, PathBuf) {
    match dir {
        Some(dir) => (None, dir),
        None => {
            let temp = tempfile::tempdir().expect("create a temporary data directory");
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    }
}

/// The external broker `external` names, if its variable is set.
async fn external(external: External) -> Option<TestBroker> {
    let (amqp, mqtt) = match external {
        External::Never => return None,
        External::Amqp => (Some(resolve(EXTERNAL_AMQP).await?), None),
        External::Mqtt => {
            let mqtt = resolve(EXTERNAL_MQTT).await?;
            (resolve(EXTERNAL_AMQP).await, Some(mqtt))
        }
    };
    Some(TestBroker {
        amqp,
        mqtt,
        external: Some(external),
        kind: Kind::External,
        _dir: None,
    })
}

/// The address in environment variable `var`, if it is set.
async fn resolve(var: &str) -> Option<SocketAddr> {
    let value = std::env::var(var).ok()?;
    let addr = tokio::net::lookup_host(value.as_str())
        .await
        .unwrap_or_else(|e| panic!("{var}={value} is not host:port: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{var}={value} resolves to nothing"));
    Some(addr)
}

/// A broker under test: warren in-process or as a child process, or an external broker.
pub(crate) struct TestBroker {
    amqp: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
    /// Which variable named the broker, when it is external.
    external: Option<External>,
    kind: Kind,
    /// The temporary data directory, removed after the broker stops.
    _dir: Option<tempfile::TempDir>,
}

enum Kind {
    External,
    InProcess(warren::Broker),
    /// Boxed: a child process's handles are much larger than the other variants.
    Process(Box<BrokerProcess>),
}

impl TestBroker {
    /// Starts warren in-process with the defaults (or the broker [`EXTERNAL_AMQP`] names).
    pub(crate) async fn start() -> TestBroker {
        TestBroker::options().start().await
    }

    /// The defaults, to adjust before [`BrokerOptions::start`].
    pub(crate) fn options() -> BrokerOptions {
        BrokerOptions {
            external: External::Amqp,
            data_dir: None,
            configure: Vec::new(),
            process: false,
            args: Vec::new(),
        }
    }

    /// The AMQP listener address. Panics (with what to set) when the tests run against an
    /// external MQTT broker without [`EXTERNAL_AMQP`].
    pub(crate) fn amqp_addr(&self) -> SocketAddr {
        self.amqp.unwrap_or_else(|| {
            panic!(
                "{EXTERNAL_MQTT} is set but {EXTERNAL_AMQP} is not: the cross-protocol tests \
                 need both (e.g. RabbitMQ with rabbitmq_mqtt: 127.0.0.1:1883 and 127.0.0.1:5672)"
            )
        })
    }

    /// The MQTT listener address. Panics when an AMQP-only external broker is under test.
    pub(crate) fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt.unwrap_or_else(|| {
            panic!("{EXTERNAL_AMQP} names the broker under test; this test needs {EXTERNAL_MQTT}")
        })
    }

    /// An `amqp://` URI for guest on vhost `/`.
    pub(crate) fn amqp_uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp_addr())
    }

    /// The in-process broker (its other listeners' addresses, TLS reload). Panics for a child
    /// process or an external broker.
    #[allow(dead_code)] // not every test crate uses it
    pub(crate) fn in_process(&self) -> &warren::Broker {
        match &self.kind {
            Kind::InProcess(broker) => broker,
            _ => panic!("this test needs warren in-process"),
        }
    }

    /// The in-process broker's Prometheus endpoint. Panics for a child process or an external
    /// broker, and unless the broker was started with
    /// `.config(|c| c.prometheus_port = Some(0))`.
    #[allow(dead_code)] // not every test crate uses it
    pub(crate) fn prometheus_addr(&self) -> SocketAddr {
        self.in_process().prometheus_addr().expect(
            "no Prometheus endpoint: start the broker with .config(|c| c.prometheus_port = Some(0))",
        )
    }

    /// What counts the message data the in-process broker holds in memory against the memory
    /// high watermark (`None` for a child process or an external broker).
    #[allow(dead_code)] // not every test crate uses it
    pub(crate) fn memory_gauge(&self) -> Option<std::sync::Arc<warren::core::MemoryGauge>> {
        match &self.kind {
            Kind::InProcess(broker) => Some(broker.core().memory().clone()),
            _ => None,
        }
    }

    /// Whether the tests run against an external broker (RabbitMQ, Mosquitto).
    pub(crate) fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// Stops the broker gracefully: in-process, connections closed and the store flushed; a
    /// process gets SIGTERM and must exit successfully; an external broker is left alone.
    pub(crate) async fn shutdown(self) {
        match self.kind {
            Kind::External => {}
            Kind::InProcess(broker) => {
                within_for(START_STOP, "graceful broker shutdown", broker.shutdown()).await;
            }
            Kind::Process(process) => {
                let (status, log) = process.terminate().await;
                assert!(
                    status.success(),
                    "warren exits successfully on SIGTERM, got {status}; log:\n{}",
                    log.text()
                );
            }
        }
    }

    fn process(&self) -> &BrokerProcess {
        match &self.kind {
            Kind::Process(process) => process,
            _ => panic!("only a broker started with .process() has a pid and a log"),
        }
    }

    /// The process and its temporary data directory, which must outlive it.
    fn into_process(self) -> (BrokerProcess, Option<tempfile::TempDir>) {
        match self.kind {
            Kind::Process(process) => (*process, self._dir),
            _ => panic!("only a broker started with .process() can be killed or terminated"),
        }
    }

    /// The process id of a [`BrokerOptions::process`] broker.
    pub(crate) fn pid(&self) -> u32 {
        self.process().pid
    }

    /// The captured log of a [`BrokerOptions::process`] broker.
    pub(crate) fn log(&self) -> &Log {
        &self.process().log
    }

    /// The resident set size in bytes of a [`BrokerOptions::process`] broker, if readable.
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.process().pid)
    }

    /// SIGKILL (a crash: no flush, no goodbye) and wait for the process to be gone. Returns the
    /// log.
    pub(crate) async fn kill(self) -> Log {
        let (process, _dir) = self.into_process();
        process.kill().await
    }

    /// SIGTERM (graceful stop) and wait for the process to exit. Returns its exit status and
    /// log.
    pub(crate) async fn terminate(self) -> (ExitStatus, Log) {
        let (process, _dir) = self.into_process();
        process.terminate().await
    }
}

// ---------------------------------------------------------------------------------------------
// The warren binary as a child process
// ---------------------------------------------------------------------------------------------

/// The log of a broker process, shared with the tasks that read its output.
#[derive(Clone)]
pub(crate) struct Log(Arc<LogInner>);

struct LogInner {
    lines: Mutex<Vec<String>>,
    /// Bumped for every line and for every output stream that ends.
    events: watch::Sender<u64>,
    /// How many of the two output streams have ended.
    closed: AtomicU64,
}

impl Log {
    fn new() -> Log {
        Log(Arc::new(LogInner {
            lines: Mutex::new(Vec::new()),
            events: watch::channel(0).0,
            closed: AtomicU64::new(0),
        }))
    }

    /// Every line so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lines.lock().clone()
    }

    /// The whole log as one string (for failure messages).
    pub(crate) fn text(&self) -> String {
        self.0.lines.lock().join("\n")
    }

    /// The first line (from index `from`) matching `predicate`, waiting for it up to `limit`.
    /// Panics with the log if the broker's output ends (it exited) or time runs out.
    pub(crate) async fn wait_for(
        &self,
        from: usize,
        what: &str,
        limit: Duration,
        predicate: impl Fn(&str) -> bool,
    ) -> String {
        let mut events = self.0.events.subscribe();
        let search = async {
            loop {
                if let Some(line) = self.0.lines.lock().iter().skip(from).find(|l| predicate(l)) {
                    return Some(line.clone());
                }
                if self.0.closed.load(Ordering::SeqCst) >= 2 {
                    return None;
                }
                if events.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(limit, search).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the broker exited before logging {what}; its log:\n{}",
                self.text()
            ),
            Err(_) => panic!(
                "timed out after {limit:?} waiting for the broker to log {what}; its log:\n{}",
                self.text()
            ),
        }
    }

    fn reader(&self, output: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(output).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.0.lines.lock().push(strip_ansi(&line));
                log.0.events.send_modify(|n| *n += 1);
            }
            log.0.closed.fetch_add(1, Ordering::SeqCst);
            log.0.events.send_modify(|n| *n += 1);
        })
    }
}

/// Removes ANSI escape sequences (colours, italics) from a log line.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The `address=HOST:PORT` field of a log line.
fn address_field(line: &str) -> Option<SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    let value: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '}')
        .collect();
    value.trim_matches('"').parse().ok()
}

/// The warren binary running as a child process on 127.0.0.1 with ephemeral ports.
struct BrokerProcess {
    child: Child,
    pid: u32,
    amqp: SocketAddr,
    mqtt: SocketAddr,
    log: Log,
    readers: Vec<JoinHandle<()>>,
}

impl BrokerProcess {
    /// Starts `warren --bind 127.0.0.1 --amqp-port 0 --mqtt-port 0 --ws-port 0 --prometheus-port 0
    /// --data-dir DIR EXTRA...` and
    /// waits until both listeners are up (recovery happens before they are bound).
    async fn start(data_dir: &Path, extra_args: &[String]) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args([
                "--bind",
                "127.0.0.1",
                "--amqp-port",
                "0",
                "--mqtt-port",
                "0",
                "--ws-port",
                "0",
                "--prometheus-port",
                "0",
                "--management-port",
                "0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the warren binary starts");
        let pid = child.id().expect("a running child has a pid");
        let log = Log::new();
        let readers = vec![
            log.reader(child.stdout.take().expect("piped stdout")),
            log.reader(child.stderr.take().expect("piped stderr")),
        ];
        let amqp_line = log
            .wait_for(0, "the AMQP listener start", START_STOP, |line| {
                line.contains("AMQP 0-9-1 listener started")
            })
            .await;
        let mqtt_line = log
            .wait_for(0, "the MQTT listener start", START_STOP, |line| {
                line.contains("MQTT 3.1.1/5.0 listener started")
            })
            .await;
        let amqp = address_field(&amqp_line)
            .unwrap_or_else(|| panic!("no address=HOST:PORT in {amqp_line:?}"));
        let mqtt = address_field(&mqtt_line)
            .unwrap_or_else(|| panic!("no address=HOST:PORT in {mqtt_line:?}"));
        BrokerProcess {
            child,
            pid,
            amqp,
            mqtt,
            log,
            readers,
        }
    }

    async fn kill(mut self) -> Log {
        self.child.start_kill().expect("SIGKILL is sent");
        within("the killed broker to exit", self.child.wait())
            .await
            .expect("wait for the killed broker");
        self.finish().await
    }

    async fn terminate(mut self) -> (ExitStatus, Log) {
        // The binary installs its SIGTERM handler after `Broker::start` returns, i.e. after the
        // listener lines; a SIGTERM sent before that kills it outright. It logs
        // "warren <version> started" just before installing the handler, so wait for that line.
        self.log
            .wait_for(0, "\"warren <version> started\"", START_STOP, |line| {
                line.contains("warren ") && line.ends_with(" started") && !line.contains("listener")
            })
            .await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid);
        let exit = within_for(
            START_STOP,
            "the broker to stop after SIGTERM",
            self.child.wait(),
        )
        .await
        .expect("wait for the broker");
        let log = self.finish().await;
        (exit, log)
    }

    async fn finish(&mut self) -> Log {
        for reader in self.readers.drain(..) {
            let _ = within("the broker's output to end", reader).await;
        }
        self.log.clone()
    }
}

/// `VmRSS` of a process in bytes.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
