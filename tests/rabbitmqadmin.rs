//! RabbitMQ's own command-line tool, `rabbitmqadmin`, against warren's management API: the
//! script ships inside RabbitMQ's management plugin and is what operators already have in their
//! shell history, so it parses the API's answers with exactly RabbitMQ's assumptions (column
//! names, JSON shapes, status codes: a 405 or a `null` in a table crashes it). Queues,
//! exchanges, bindings, publish and get in one test; vhosts, users and permissions in another,
//! with the new user then logging in over AMQP.
//!
//! The script is found, in order: `$WARREN_TEST_RABBITMQADMIN`; `target/rabbitmqadmin` in the
//! repository, where `.ci/run` extracts it from Debian's `rabbitmq-server` package without
//! installing it; the file an installed Debian `rabbitmq-server` has under
//! `/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/`. The discovery is here rather than in
//! `scripts/test.sh` so that a plain `cargo test --test rabbitmqadmin` finds it too. Without it
//! the test fails (it is never skipped) and says how to get it. It is run with the tests'
//! Python interpreter (`tests/common/python.rs`); it needs only Python's standard library.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{External, TestBroker};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use tokio::process::Command;

/// Environment variable naming the rabbitmqadmin script to run.
const RABBITMQADMIN: &str = "WARREN_TEST_RABBITMQADMIN";

/// Where an installed Debian `rabbitmq-server` keeps its plugins (one directory per version).
const DEBIAN_RABBITMQ_LIB: &str = "/usr/lib/rabbitmq/lib";

/// The script's path inside a `rabbitmq_management-VERSION` plugin directory.
const SCRIPT_IN_PLUGIN: &str = "priv/www/cli/rabbitmqadmin";

/// The rabbitmqadmin script, or a failed test saying how to get one.
fn script() -> PathBuf {
    let hint = format!(
        "tests/rabbitmqadmin.rs needs RabbitMQ's rabbitmqadmin script (Python 3). Get it without \
         installing RabbitMQ, as .ci/run does: `d=$(mktemp -d); (cd $d && apt-get download \
         rabbitmq-server); mkdir -p target; dpkg-deb --fsys-tarfile $d/rabbitmq-server_*.deb | \
         tar -xO --wildcards '*/priv/www/cli/rabbitmqadmin' > target/rabbitmqadmin` (Debian/\
         Ubuntu), or set {RABBITMQADMIN} to the file (it is in any RabbitMQ's \
         plugins/rabbitmq_management-*/{SCRIPT_IN_PLUGIN}, and served by a running RabbitMQ at \
         http://HOST:15672/cli/rabbitmqadmin)"
    );
    if let Some(named) = std::env::var_os(RABBITMQADMIN).filter(|p| !p.is_empty()) {
        let named = PathBuf::from(named);
        assert!(
            named.is_file(),
            "{RABBITMQADMIN}={} is not a file; {hint}",
            named.display()
        );
        return named;
    }
    let extracted = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/rabbitmqadmin");
    if extracted.is_file() {
        return extracted;
    }
    installed().unwrap_or_else(|| panic!("{hint}"))
}

/// The script of an installed Debian `rabbitmq-server` (the last in path order should several
/// versions be unpacked side by side).
fn installed() -> Option<PathBuf> {
    let mut found = Vec::new();
    for server in std::fs::read_dir(DEBIAN_RABBITMQ_LIB).ok()?.flatten() {
        let Ok(plugins) = std::fs::read_dir(server.path().join("plugins")) else {
            continue;
        };
        for plugin in plugins.flatten() {
            let is_management = plugin
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with("rabbitmq_management-"));
            let script = plugin.path().join(SCRIPT_IN_PLUGIN);
            if is_management && script.is_file() {
                found.push(script);
            }
        }
    }
    found.sort();
    found.pop()
}

/// What one rabbitmqadmin run left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A broker with its management API on, and a way to run rabbitmqadmin against it as guest.
struct Admin {
    broker: TestBroker,
    api: SocketAddr,
    python: PathBuf,
    script: PathBuf,
    /// rabbitmqadmin reads `~/.rabbitmqadmin.conf` when it exists, which could point it at
    /// another node or vhost; an empty home keeps the developer's file out of the test.
    home: tempfile::TempDir,
}

impl Admin {
    async fn start() -> Admin {
        // Found first, so that a missing script fails before anything starts.
        let script = script();
        let broker = TestBroker::options()
            .external(External::Never)
            .config(|config| config.management_port = Some(0))
            .start()
            .await;
        let api = broker
            .in_process()
            .management_addr()
            .expect("the management listener is on");
        Admin {
            broker,
            api,
            python: common::python::interpreter(),
            script,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `rabbitmqadmin -H 127.0.0.1 -P PORT -u guest -p guest args...`.
    async fn run(&self, args: &[&str]) -> Run {
        let port = self.api.port().to_string();
        let output = Command::new(&self.python)
            .arg(&self.script)
            .args(["-H", "127.0.0.1", "-P", &port, "-u", "guest", "-p", "guest"])
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("USERPROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let output = common::within("rabbitmqadmin to finish", output)
            .await
            .unwrap_or_else(|e| panic!("cannot run {} ({e})", self.python.display()));
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// [`Admin::run`], which must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "rabbitmqadmin {args:?} failed: {run:?}");
        run.stdout
    }

    /// A `declare ...` or `delete ...`, which must succeed saying `said` (RabbitMQ's
    /// rabbitmqadmin prints e.g. `queue declared`, whatever the answer's body).
    async fn says(&self, args: &[&str], said: &str) {
        let stdout = self.ok(args).await;
        assert_eq!(stdout, format!("{said}\n"), "rabbitmqadmin {args:?}");
    }

    /// `list WHAT` in rabbitmqadmin's default table format, as rows of named cells.
    async fn table(&self, args: &[&str]) -> Vec<Row> {
        table(&self.ok(args).await)
    }

    async fn shutdown(self) {
        self.broker.shutdown().await;
    }
}

/// One row of a rabbitmqadmin table: (column, cell) pairs in the table's order.
#[derive(Debug)]
struct Row(Vec<(String, String)>);

impl Row {
    fn get(&self, column: &str) -> &str {
        self.0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, cell)| cell.as_str())
            .unwrap_or_else(|| panic!("no column {column:?} in {self:?}"))
    }
}

/// Parses rabbitmqadmin's ASCII table (`+---+` bars, `| a | b |` rows, the first row the
/// header). No rows at all is printed as `No items`.
fn table(stdout: &str) -> Vec<Row> {
    let mut lines = stdout
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect::<Vec<_>>()
        });
    let Some(header) = lines.next() else {
        assert_eq!(stdout, "No items\n", "not a rabbitmqadmin table");
        return Vec::new();
    };
    lines
        .map(|cells| {
            assert_eq!(cells.len(), header.len(), "ragged table:\n{stdout}");
            Row(header.iter().cloned().zip(cells).collect())
        })
        .collect()
}

/// The rows whose `column` reads `value`.
fn rows_where<'a>(rows: &'a [Row], column: &str, value: &str) -> Vec<&'a Row> {
    rows.iter().filter(|row| row.get(column) == value).collect()
}

#[tokio::test]
async fn queues_exchanges_bindings_publish_and_get() {
    let admin = Admin::start().await;

    admin
        .says(
            &["declare", "queue", "name=q", "durable=true"],
            "queue declared",
        )
        .await;
    // `list queues` asks for `?columns=name,messages` across every vhost.
    let queues = admin.table(&["list", "queues"]).await;
    let q = rows_where(&queues, "name", "q");
    assert_eq!(q.len(), 1, "{queues:?}");
    assert_eq!(q[0].get("messages"), "0");

    admin
        .says(
            &["declare", "exchange", "name=e", "type=topic"],
            "exchange declared",
        )
        .await;
    let exchanges = admin.table(&["list", "exchanges"]).await;
    let e = rows_where(&exchanges, "name", "e");
    assert_eq!(e.len(), 1, "{exchanges:?}");
    assert_eq!(e[0].get("type"), "topic");
    // The default exchange is listed with an empty name, as RabbitMQ lists it.
    assert!(
        exchanges
            .iter()
            .any(|row| row.get("name").is_empty() && row.get("type") == "direct"),
        "{exchanges:?}"
    );

    admin
        .says(
            &[
                "declare",
                "binding",
                "source=e",
                "destination=q",
                "routing_key=k",
            ],
            "binding declared",
        )
        .await;
    let bindings = admin.table(&["list", "bindings"]).await;
    let ours = rows_where(&bindings, "source", "e");
    assert_eq!(ours.len(), 1, "{bindings:?}");
    assert_eq!(ours[0].get("destination"), "q");
    assert_eq!(ours[0].get("routing_key"), "k");
    // Every queue's implicit binding to the default exchange is listed too.
    assert!(
        bindings.iter().any(|row| row.get("source").is_empty()
            && row.get("destination") == "q"
            && row.get("routing_key") == "q"),
        "{bindings:?}"
    );

    // rabbitmqadmin prints "Message published but NOT routed" when the answer's `routed` is
    // false.
    admin
        .says(
            &["publish", "exchange=e", "routing_key=k", "payload=hello"],
            "Message published",
        )
        .await;
    // Without columns the table has one column per field of the answer, so a field whose
    // value is null would crash the script (it measures every cell's length).
    let got = admin
        .table(&["get", "queue=q", "ackmode=ack_requeue_false"])
        .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("payload"), "hello");
    assert_eq!(got[0].get("payload_bytes"), "5");
    assert_eq!(got[0].get("payload_encoding"), "string");
    assert_eq!(got[0].get("routing_key"), "k");
    assert_eq!(got[0].get("exchange"), "e");
    assert_eq!(got[0].get("message_count"), "0");
    assert_eq!(got[0].get("redelivered"), "False");
    // ack_requeue_false took it for good.
    let again = admin.table(&["get", "queue=q"]).await;
    assert!(again.is_empty(), "{again:?}");

    // The raw JSON of `/api/queues` while the queue exists, then without it.
    let listed: Value =
        serde_json::from_str(&admin.ok(&["-f", "raw_json", "list", "queues"]).await)
            .expect("raw_json is JSON");
    let listed = listed.as_array().expect("a JSON array");
    let q = listed
        .iter()
        .find(|queue| queue["name"] == "q")
        .unwrap_or_else(|| panic!("q not in {listed:?}"));
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["durable"], true);
    assert_eq!(q["messages"], 0);

    admin
        .says(&["delete", "queue", "name=q"], "queue deleted")
        .await;
    let stdout = admin.ok(&["-f", "raw_json", "list", "queues"]).await;
    let listed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("raw_json is not JSON ({e}): {stdout}"));
    let listed = listed.as_array().expect("a JSON array");
    assert!(
        listed.iter().all(|queue| queue["name"] != "q"),
        "{listed:?}"
    );

    // A 404 is rabbitmqadmin's "Not found", exit code 1 (RabbitMQ 3.10:
    // `*** Not found: /api/queues/%2F/q`).
    let missing = admin.run(&["delete", "queue", "name=q"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert_eq!(missing.stderr, "*** Not found: /api/queues/%2F/q\n\n");

    admin
        .says(&["delete", "exchange", "name=e"], "exchange deleted")
        .await;
    admin.shutdown().await;
}

#[tokio::test]
async fn vhosts_users_and_permissions() {
    let admin = Admin::start().await;

    admin
        .says(&["declare", "vhost", "name=v2"], "vhost declared")
        .await;
    let vhosts = admin.table(&["list", "vhosts"]).await;
    assert_eq!(rows_where(&vhosts, "name", "v2").len(), 1, "{vhosts:?}");
    assert_eq!(rows_where(&vhosts, "name", "/").len(), 1, "{vhosts:?}");

    admin
        .says(
            &[
                "declare",
                "user",
                "name=u2",
                "password=p2",
                "tags=monitoring",
            ],
            "user declared",
        )
        .await;
    // No columns: one per field of `/api/users` (RabbitMQ 3.10: name, hashing_algorithm,
    // password_hash, tags; tags a JSON array the script joins with spaces).
    let users = admin.table(&["list", "users"]).await;
    let u2 = rows_where(&users, "name", "u2");
    assert_eq!(u2.len(), 1, "{users:?}");
    assert_eq!(u2[0].get("tags"), "monitoring");
    assert_eq!(
        u2[0].get("hashing_algorithm"),
        "rabbit_password_hashing_sha256"
    );
    let guest = rows_where(&users, "name", "guest");
    assert_eq!(guest.len(), 1, "{users:?}");
    assert_eq!(guest[0].get("tags"), "administrator");

    admin
        .says(
            &[
                "declare",
                "permission",
                "vhost=v2",
                "user=u2",
                "configure=.*",
                "write=.*",
                "read=.*",
            ],
            "permission declared",
        )
        .await;
    let permissions = admin.table(&["list", "permissions"]).await;
    let granted: Vec<_> = rows_where(&permissions, "user", "u2")
        .into_iter()
        .filter(|row| row.get("vhost") == "v2")
        .collect();
    assert_eq!(granted.len(), 1, "{permissions:?}");
    assert_eq!(granted[0].get("configure"), ".*");
    assert_eq!(granted[0].get("write"), ".*");
    assert_eq!(granted[0].get("read"), ".*");

    // What rabbitmqadmin made works over AMQP: u2 logs in to v2 with p2 and may declare there.
    let uri = format!("amqp://u2:p2@{}/v2", admin.broker.amqp_addr());
    let connection = common::within(
        "u2 connecting to v2",
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("u2 may open v2");
    let channel = common::channel(&connection).await;
    common::within(
        "queue.declare as u2",
        channel.queue_declare(
            "u2-queue",
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("u2 may configure in v2");
    common::within("connection close", connection.close(200, "bye"))
        .await
        .unwrap();

    admin
        .says(&["delete", "user", "name=u2"], "user deleted")
        .await;
    let users = admin.table(&["list", "users"]).await;
    assert!(rows_where(&users, "name", "u2").is_empty(), "{users:?}");
    admin
        .says(&["delete", "vhost", "name=v2"], "vhost deleted")
        .await;
    let vhosts = admin.table(&["list", "vhosts"]).await;
    assert!(rows_where(&vhosts, "name", "v2").is_empty(), "{vhosts:?}");
    admin.shutdown().await;
}
