//! `warrenctl`, rabbitmqctl for warren, end to end: the built binary is run against an
//! in-process broker's management API, and what a user sees is asserted (stdout in
//! rabbitmqctl's layout, messages on stderr, exit codes). Every command is run at least once;
//! clients made with lapin provide the queues, consumers, channels and connections the lists
//! show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{External, TestBroker};
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Exit codes warrenctl shares with rabbitmqctl (sysexits).
const USAGE: i32 = 64;
const DATA: i32 = 65;
const NO_USER: i32 = 67;
const UNAVAILABLE: i32 = 69;
const TEMP_FAIL: i32 = 75;
const NO_PERMISSION: i32 = 77;

/// A broker with its management API on, and the API's address.
async fn broker() -> (TestBroker, SocketAddr) {
    let broker = TestBroker::options()
        .external(External::Never)
        .config(|config| config.management_port = Some(0))
        .start()
        .await;
    let api = broker
        .in_process()
        .management_addr()
        .expect("the management listener is on");
    (broker, api)
}

/// What one warrenctl run left.
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

/// Runs warrenctl with `args` (no `--url` added) and `input` on stdin.
async fn run_raw(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(args)
        // The caller's environment must not point the tests elsewhere.
        .env_remove("WARRENCTL_URL")
        .env_remove("WARRENCTL_USERNAME")
        .env_remove("WARRENCTL_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("warrenctl starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = common::within("warrenctl to finish", child.wait_with_output())
        .await
        .expect("warrenctl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs `warrenctl --url http://API args...`.
async fn ctl(api: SocketAddr, args: &[&str]) -> Run {
    ctl_with_input(api, args, "").await
}

/// [`ctl`] with `input` on stdin.
async fn ctl_with_input(api: SocketAddr, args: &[&str], input: &str) -> Run {
    let url = format!("http://{api}");
    let mut all = vec!["--url", url.as_str()];
    all.extend_from_slice(args);
    run_raw(&all, input).await
}

/// [`ctl`], which must succeed; its stdout.
async fn ok(api: SocketAddr, args: &[&str]) -> String {
    let run = ctl(api, args).await;
    assert_eq!(run.code, 0, "warrenctl {args:?} failed: {run:?}");
    run.stdout
}

/// [`ctl`], which must fail with `code` and say `message` on stderr.
async fn fails(api: SocketAddr, args: &[&str], code: i32, message: &str) -> Run {
    let run = ctl(api, args).await;
    assert_eq!(run.code, code, "warrenctl {args:?}: {run:?}");
    assert!(
        run.stderr.starts_with("Error: ") && run.stderr.contains(message),
        "warrenctl {args:?}: stderr should say {message:?}: {run:?}"
    );
    run
}

/// The lines of `text`.
fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Polls `list_queues -q name COLUMN` until `queue`'s row reads `value` (the broker updates
/// its counts just after a delivery is sent).
async fn wait_for_queue_column(api: SocketAddr, queue: &str, column: &str, value: &str) {
    let wanted = format!("{queue}\t{value}");
    for _ in 0..200 {
        let stdout = ok(api, &["-q", "list_queues", "name", column]).await;
        if stdout.lines().any(|line| line == wanted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{queue} never showed {column} = {value}");
}

/// A queue holding 5 messages of which 2 are delivered and unacknowledged: the consumer (and
/// its connection) must stay alive for as long as the test looks at it.
async fn queue_with_unacked(
    broker: &TestBroker,
    api: SocketAddr,
) -> (lapin::Connection, lapin::Consumer, String) {
    let connection = common::connect(broker).await;
    let channel = common::confirm_channel(&connection).await;
    let queue = common::exclusive_queue(&channel, "ctl").await;
    for n in 0..5 {
        common::publish(&channel, "", &queue, format!("m{n}").as_bytes()).await;
    }
    common::within(
        "basic.qos",
        channel.basic_qos(2, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = common::within(
        "basic.consume",
        channel.basic_consume(
            &queue,
            "ctl-consumer",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        common::next_delivery(&mut consumer).await;
    }
    wait_for_queue_column(api, &queue, "messages_unacknowledged", "2").await;
    (connection, consumer, queue)
}

#[tokio::test]
async fn list_queues_prints_rabbitmqctls_layout() {
    let (broker, api) = broker().await;
    let (connection, _consumer, queue) = queue_with_unacked(&broker, api).await;

    // rabbitmqctl 3.10:
    //   Timeout: 60.0 seconds ...
    //   Listing queues for vhost / ...
    //   name	messages
    //   q	5
    let stdout = ok(api, &["list_queues"]).await;
    let shown = lines(&stdout);
    assert_eq!(shown[0], "Timeout: 60.0 seconds ...", "{stdout}");
    assert_eq!(shown[1], "Listing queues for vhost / ...", "{stdout}");
    assert_eq!(shown[2], "name\tmessages", "{stdout}");
    assert!(
        shown[3..].contains(&format!("{queue}\t5").as_str()),
        "{stdout}"
    );
    let timeout = ok(api, &["-t", "7", "list_queues"]).await;
    assert_eq!(lines(&timeout)[0], "Timeout: 7.0 seconds ...");

    let quiet = ok(
        api,
        &[
            "-q",
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ],
    )
    .await;
    assert_eq!(
        quiet,
        format!("name\tmessages_ready\tmessages_unacknowledged\n{queue}\t3\t2\n")
    );
    // Comma-separated columns and options after the command work too.
    let commas = ok(api, &["list_queues", "name,consumers,durable", "--quiet"]).await;
    assert_eq!(
        commas,
        format!("name\tconsumers\tdurable\n{queue}\t1\tfalse\n")
    );

    let json = ok(
        api,
        &[
            "--formatter",
            "json",
            "list_queues",
            "name",
            "messages",
            "consumers",
        ],
    )
    .await;
    let parsed: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let rows = parsed.as_array().expect("a JSON array");
    assert_eq!(
        rows,
        &vec![serde_json::json!({"name": queue, "messages": 5, "consumers": 1})]
    );
    // Keys in the order asked for, one object a line, as rabbitmqctl prints them.
    assert!(
        json.contains(&format!(
            r#"{{"name":"{queue}","messages":5,"consumers":1}}"#
        )),
        "{json}"
    );

    let table = ok(api, &["-q", "--formatter", "table", "list_queues"]).await;
    let table_lines = lines(&table);
    assert!(table_lines[0].starts_with('┌'), "{table}");
    assert!(
        table_lines[1].starts_with("│ name ") && table_lines[1].contains("│ messages │"),
        "{table}"
    );
    assert!(
        table_lines
            .iter()
            .any(|line| line.contains(&queue) && line.contains("│ 5 ")),
        "{table}"
    );

    let all = ok(
        api,
        &[
            "-q",
            "list_queues",
            "name",
            "exclusive",
            "auto_delete",
            "arguments",
            "type",
            "state",
            "vhost",
        ],
    )
    .await;
    assert!(
        all.contains(&format!("{queue}\ttrue\tfalse\t[]\tclassic\trunning\t/")),
        "{all}"
    );
    fails(
        api,
        &["list_queues", "name", "no_such_column"],
        USAGE,
        "Info key(s) no_such_column are not supported",
    )
    .await;
    fails(
        api,
        &["-p", "no-such-vhost", "list_queues"],
        DATA,
        "Virtual host 'no-such-vhost' does not exist",
    )
    .await;
    common::close(connection).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn connections_channels_and_consumers_are_listed() {
    let (broker, api) = broker().await;
    let (connection, _consumer, queue) = queue_with_unacked(&broker, api).await;

    let connections = ok(api, &["list_connections"]).await;
    let shown = lines(&connections);
    assert_eq!(shown[0], "Listing connections ...");
    assert_eq!(shown[1], "user\tpeer_host\tpeer_port\tstate");
    assert_eq!(shown.len(), 3, "{connections}");
    let row: Vec<&str> = shown[2].split('\t').collect();
    assert_eq!(row[0], "guest");
    assert_eq!(row[1], "127.0.0.1");
    assert!(row[2].parse::<u16>().is_ok(), "{connections}");
    assert_eq!(row[3], "running");
    let named = ok(
        api,
        &["-q", "list_connections", "name", "vhost", "protocol"],
    )
    .await;
    assert!(lines(&named)[1].ends_with("\t/\tAMQP 0-9-1"), "{named}");

    let channels = ok(api, &["list_channels"]).await;
    let shown = lines(&channels);
    assert_eq!(shown[0], "Listing channels ...");
    assert_eq!(
        shown[1],
        "pid\tuser\tconsumer_count\tmessages_unacknowledged"
    );
    assert_eq!(shown.len(), 3, "{channels}");
    assert!(shown[2].ends_with("\tguest\t1\t2"), "{channels}");
    let numbered = ok(api, &["-q", "list_channels", "number", "prefetch_count"]).await;
    assert_eq!(numbered, "number\tprefetch_count\n1\t2\n");

    // rabbitmqctl 3.10:
    //   Listing consumers in vhost / ...
    //   queue_name	channel_pid	consumer_tag	ack_required	prefetch_count	active	arguments
    let consumers = ok(api, &["list_consumers"]).await;
    let shown = lines(&consumers);
    assert_eq!(shown[0], "Listing consumers in vhost / ...");
    assert_eq!(
        shown[1],
        "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments"
    );
    assert_eq!(shown.len(), 3, "{consumers}");
    let row: Vec<&str> = shown[2].split('\t').collect();
    assert_eq!(row[0], queue);
    assert!(!row[1].is_empty(), "{consumers}");
    assert_eq!(&row[2..], &["ctl-consumer", "true", "2", "true", "[]"]);
    let json = ok(
        api,
        &["--formatter", "json", "list_consumers", "queue_name"],
    )
    .await;
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, serde_json::json!([{ "queue_name": queue }]));

    common::close(connection).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn close_connection_tells_the_client_why() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let (errors, mut error_seen) = tokio::sync::mpsc::unbounded_channel();
    connection.on_error(move |error| {
        let _ = errors.send(common::reply_text(&error));
    });
    let _channel = common::channel(&connection).await;
    let names = ok(api, &["-q", "list_connections", "name"]).await;
    let shown = lines(&names);
    assert_eq!(shown[0], "name");
    assert_eq!(shown.len(), 2, "{names}");
    let name = shown[1].to_string();

    let stdout = ok(api, &["close_connection", &name, "maintenance window"]).await;
    assert_eq!(
        stdout,
        format!("Closing connection \"{name}\", reason: maintenance window...\n")
    );
    let reason = common::within("the client to hear of the close", error_seen.recv())
        .await
        .expect("the connection reports its close");
    assert!(
        reason.contains("CONNECTION_FORCED") && reason.contains("maintenance window"),
        "{reason}"
    );
    let mut gone = false;
    for _ in 0..200 {
        if ok(api, &["-q", "list_connections", "name"]).await == "name\n" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the closed connection is still listed");
    fails(
        api,
        &["close_connection", "no such connection", "bye"],
        DATA,
        "connection \"no such connection\" not found",
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for command in ["list_queues", "ping", "status", "list_users"] {
        let run = run_raw(&["--url", &url, command], "").await;
        assert_eq!(run.code, UNAVAILABLE, "{command}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!(
                "Error: unable to perform an operation on the node at {url}"
            )),
            "{command}: {run:?}"
        );
    }
    // `-n` with a URL overrides --url; `WARRENCTL_URL` is the default's source.
    let run = run_raw(
        &["--url", "http://127.0.0.1:9", "-n", &url, "list_vhosts"],
        "",
    )
    .await;
    assert!(run.stderr.contains(&url), "{run:?}");
    let from_env = Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .arg("ping")
        .env("WARRENCTL_URL", &url)
        .output()
        .await
        .unwrap();
    assert_eq!(from_env.status.code(), Some(UNAVAILABLE));
    assert!(String::from_utf8_lossy(&from_env.stderr).contains(&url));

    let waited = run_raw(&["--url", &url, "-t", "1", "await_startup"], "").await;
    assert_eq!(waited.code, TEMP_FAIL, "{waited:?}");
    assert!(
        waited.stderr.contains("did not start within 1 seconds"),
        "{waited:?}"
    );
    // A node that takes the connection but never answers: -t bounds the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let run = run_raw(&["--url", &silent_url, "-t", "1", "-q", "list_queues"], "").await;
    assert_eq!(run.code, TEMP_FAIL, "{run:?}");
    assert!(
        run.stderr
            .contains("timed out. Timeout value used: 1 seconds"),
        "{run:?}"
    );
    drop(silent);
    let tls = run_raw(&["--url", "https://127.0.0.1:15671", "ping"], "").await;
    assert_eq!(tls.code, USAGE, "{tls:?}");
    assert!(tls.stderr.contains("plain HTTP only"), "{tls:?}");
}

#[tokio::test]
async fn missing_objects_and_refused_credentials_fail() {
    let (broker, api) = broker().await;
    // rabbitmqctl: "Error: queue 'no-such-queue' in vhost '/' not found"
    let run = fails(
        api,
        &["purge_queue", "no-such-queue"],
        DATA,
        "queue 'no-such-queue' in vhost '/' not found",
    )
    .await;
    assert_eq!(
        run.stdout,
        "Purging queue 'no-such-queue' in vhost '/' ...\n"
    );
    fails(
        api,
        &["delete_queue", "no-such-queue"],
        DATA,
        "queue 'no-such-queue' in vhost '/' not found",
    )
    .await;
    fails(
        api,
        &["delete_user", "nobody"],
        NO_USER,
        "User \"nobody\" does not exist",
    )
    .await;
    fails(
        api,
        &["change_password", "nobody", "secret"],
        NO_USER,
        "User \"nobody\" does not exist",
    )
    .await;
    fails(
        api,
        &["delete_vhost", "no-such-vhost"],
        DATA,
        "Virtual host 'no-such-vhost' does not exist",
    )
    .await;
    fails(
        api,
        &["--password", "wrong", "list_queues"],
        NO_PERMISSION,
        "access refused",
    )
    .await;
    fails(
        api,
        &["--username", "nobody", "list_users"],
        NO_PERMISSION,
        "did not accept user 'nobody'",
    )
    .await;
    // A bad command line is a usage error, as in rabbitmqctl.
    let run = ctl(api, &["no_such_command"]).await;
    assert_eq!(run.code, USAGE, "{run:?}");
    let run = ctl(api, &["add_vhost"]).await;
    assert_eq!(run.code, USAGE, "{run:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn help_lists_every_command() {
    let run = run_raw(&["--help"], "").await;
    assert_eq!(run.code, 0, "{run:?}");
    for command in [
        "add_user",
        "delete_user",
        "change_password",
        "clear_password",
        "set_user_tags",
        "list_users",
        "add_vhost",
        "delete_vhost",
        "list_vhosts",
        "set_permissions",
        "clear_permissions",
        "list_permissions",
        "list_user_permissions",
        "set_topic_permissions",
        "clear_topic_permissions",
        "list_topic_permissions",
        "list_user_topic_permissions",
        "list_queues",
        "list_exchanges",
        "list_bindings",
        "list_connections",
        "list_channels",
        "list_consumers",
        "status",
        "environment",
        "report",
        "ping",
        "await_startup",
        "set_policy",
        "clear_policy",
        "list_policies",
        "purge_queue",
        "delete_queue",
        "close_connection",
        "export_definitions",
        "import_definitions",
    ] {
        let listed = run
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{command} ")));
        let line = listed.unwrap_or_else(|| panic!("--help does not list {command}"));
        assert!(
            line.trim_start()[command.len()..].trim().len() > 10,
            "{command} has no description: {line}"
        );
    }
    for option in [
        "--url",
        "--username",
        "--password",
        "--vhost",
        "--node",
        "--timeout",
        "--quiet",
        "--formatter",
    ] {
        assert!(run.stdout.contains(option), "--help does not show {option}");
    }
}

#[tokio::test]
async fn users_are_added_changed_and_deleted() {
    let (broker, api) = broker().await;
    assert_eq!(
        ok(api, &["add_user", "alice", "s3cret"]).await,
        "Adding user \"alice\" ...\n"
    );
    // rabbitmqctl 3.10:
    //   Listing users ...
    //   user	tags
    //   guest	[administrator]
    let users = ok(api, &["list_users"]).await;
    let shown = lines(&users);
    assert_eq!(shown[0], "Listing users ...");
    assert_eq!(shown[1], "user\ttags");
    assert!(shown.contains(&"guest\t[administrator]"), "{users}");
    assert!(shown.contains(&"alice\t[]"), "{users}");
    fails(
        api,
        &["add_user", "alice", "other"],
        DATA,
        "User \"alice\" already exists",
    )
    .await;

    assert_eq!(
        ok(
            api,
            &["set_user_tags", "alice", "administrator", "monitoring"]
        )
        .await,
        "Setting tags for user \"alice\" to [administrator, monitoring] ...\n"
    );
    let users = ok(api, &["-q", "list_users"]).await;
    assert!(
        lines(&users).contains(&"alice\t[administrator, monitoring]"),
        "{users}"
    );
    // Her password survived the tag change: she can use the API now that she is an
    // administrator.
    let as_alice = ["--username", "alice", "--password", "s3cret"];
    let mut args = as_alice.to_vec();
    args.extend(["-q", "list_vhosts"]);
    assert_eq!(ok(api, &args).await, "name\n/\n");

    assert_eq!(
        ok(api, &["change_password", "alice", "n3w"]).await,
        "Changing password for user \"alice\" ...\n"
    );
    fails(api, &args, NO_PERMISSION, "alice").await;
    let as_alice_new = [
        "--username",
        "alice",
        "--password",
        "n3w",
        "-q",
        "list_users",
    ];
    let users = ok(api, &as_alice_new).await;
    // Her tags were kept.
    assert!(
        lines(&users).contains(&"alice\t[administrator, monitoring]"),
        "{users}"
    );
    // A password from stdin, as rabbitmqctl reads one when it is left out.
    let run = ctl_with_input(api, &["-q", "change_password", "alice"], "from-stdin\n").await;
    assert_eq!(run.code, 0, "{run:?}");
    let from_stdin = ["--username", "alice", "--password", "from-stdin", "ping"];
    ok(api, &from_stdin).await;

    assert_eq!(
        ok(api, &["clear_password", "alice"]).await,
        "Clearing password for user \"alice\" ...\n"
    );
    fails(api, &from_stdin, NO_PERMISSION, "alice").await;
    let users = ok(api, &["-q", "list_users"]).await;
    assert!(
        lines(&users).contains(&"alice\t[administrator, monitoring]"),
        "{users}"
    );

    assert_eq!(
        ok(api, &["-q", "set_user_tags", "alice"]).await,
        "",
        "-q prints nothing for a write"
    );
    let json = ok(api, &["--formatter", "json", "list_users"]).await;
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert!(
        parsed
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"user": "alice", "tags": []})),
        "{json}"
    );

    assert_eq!(
        ok(api, &["delete_user", "alice"]).await,
        "Deleting user \"alice\" ...\n"
    );
    let users = ok(api, &["-q", "list_users"]).await;
    assert!(!users.contains("alice"), "{users}");
    fails(
        api,
        &["delete_user", "alice"],
        NO_USER,
        "User \"alice\" does not exist",
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn vhosts_and_permissions() {
    let (broker, api) = broker().await;
    assert_eq!(
        ok(api, &["add_vhost", "iot", "--description", "devices"]).await,
        "Adding vhost \"iot\" ...\n"
    );
    let vhosts = ok(api, &["list_vhosts"]).await;
    let shown = lines(&vhosts);
    assert_eq!(shown[0], "Listing vhosts ...");
    assert_eq!(shown[1], "name");
    assert!(shown.contains(&"/") && shown.contains(&"iot"), "{vhosts}");
    let columns = ok(
        api,
        &["-q", "list_vhosts", "name", "tracing", "description"],
    )
    .await;
    assert!(
        lines(&columns).contains(&"iot\tfalse\tdevices"),
        "{columns}"
    );
    assert_eq!(lines(&columns)[0], "name\ttracing\tdescription");

    ok(api, &["-q", "add_user", "bob", "pw"]).await;
    assert_eq!(
        ok(
            api,
            &["-p", "iot", "set_permissions", "bob", "^bob-.*", ".*", ".*"]
        )
        .await,
        "Setting permissions for user \"bob\" in vhost \"iot\" ...\n"
    );
    // rabbitmqctl 3.10:
    //   Listing permissions for vhost "iot" ...
    //   user	configure	write	read
    let permissions = ok(api, &["list_permissions", "-p", "iot"]).await;
    let shown = lines(&permissions);
    assert_eq!(shown[0], "Listing permissions for vhost \"iot\" ...");
    assert_eq!(shown[1], "user\tconfigure\twrite\tread");
    assert!(shown.contains(&"bob\t^bob-.*\t.*\t.*"), "{permissions}");
    let mine = ok(api, &["list_user_permissions", "bob"]).await;
    assert_eq!(
        mine,
        "Listing permissions for user \"bob\" ...\nvhost\tconfigure\twrite\tread\niot\t^bob-.*\t.*\t.*\n"
    );

    assert_eq!(
        ok(
            api,
            &[
                "-p",
                "iot",
                "set_topic_permissions",
                "bob",
                "amq.topic",
                "^sensors\\.",
                ".*"
            ]
        )
        .await,
        "Setting topic permissions on \"amq.topic\" for user \"bob\" in vhost \"iot\" ...\n"
    );
    let topic = ok(api, &["-p", "iot", "list_topic_permissions"]).await;
    assert_eq!(
        topic,
        "Listing topic permissions for vhost \"iot\" ...\nuser\texchange\twrite\tread\nbob\tamq.topic\t^sensors\\.\t.*\n"
    );
    let topic = ok(api, &["-q", "list_user_topic_permissions", "bob"]).await;
    assert_eq!(
        topic,
        "vhost\texchange\twrite\tread\niot\tamq.topic\t^sensors\\.\t.*\n"
    );
    assert_eq!(
        ok(api, &["-p", "iot", "clear_topic_permissions", "bob"]).await,
        "Clearing topic permissions for user \"bob\" in vhost \"iot\" ...\n"
    );
    let topic = ok(api, &["-q", "-p", "iot", "list_topic_permissions"]).await;
    assert_eq!(topic, "user\texchange\twrite\tread\n");
    // One exchange's only.
    for exchange in ["amq.topic", "other.topic"] {
        ok(
            api,
            &[
                "-q",
                "-p",
                "iot",
                "set_topic_permissions",
                "bob",
                exchange,
                ".*",
                ".*",
            ],
        )
        .await;
    }
    assert_eq!(
        ok(
            api,
            &["-p", "iot", "clear_topic_permissions", "bob", "amq.topic"]
        )
        .await,
        "Clearing topic permissions on \"amq.topic\" for user \"bob\" in vhost \"iot\" ...\n"
    );
    let topic = ok(api, &["-q", "-p", "iot", "list_topic_permissions"]).await;
    assert_eq!(
        topic,
        "user\texchange\twrite\tread\nbob\tother.topic\t.*\t.*\n"
    );

    assert_eq!(
        ok(api, &["-p", "iot", "clear_permissions", "bob"]).await,
        "Clearing permissions for user \"bob\" in vhost \"iot\" ...\n"
    );
    let permissions = ok(api, &["-q", "-p", "iot", "list_permissions"]).await;
    assert!(!permissions.contains("bob"), "{permissions}");
    fails(
        api,
        &["-p", "iot", "set_permissions", "nobody", ".*", ".*", ".*"],
        NO_USER,
        "User \"nobody\" does not exist",
    )
    .await;
    fails(
        api,
        &["-p", "nowhere", "set_permissions", "bob", ".*", ".*", ".*"],
        DATA,
        "Virtual host 'nowhere' does not exist",
    )
    .await;

    assert_eq!(
        ok(api, &["delete_vhost", "iot"]).await,
        "Deleting vhost \"iot\" ...\n"
    );
    assert_eq!(ok(api, &["-q", "list_vhosts"]).await, "name\n/\n");
    fails(
        api,
        &["delete_vhost", "iot"],
        DATA,
        "Virtual host 'iot' does not exist",
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn policies_are_set_listed_and_cleared() {
    let (broker, api) = broker().await;
    // rabbitmqctl 3.10:
    //   Setting policy "limit" for pattern "^limited\." to "{...}" with priority "5" for vhost "/" ...
    let stdout = ok(
        api,
        &[
            "set_policy",
            "--priority",
            "5",
            "--apply-to",
            "queues",
            "limit",
            "^limited\\.",
            r#"{"max-length": 2}"#,
        ],
    )
    .await;
    assert_eq!(
        stdout,
        "Setting policy \"limit\" for pattern \"^limited\\.\" to \"{\"max-length\": 2}\" with priority \"5\" for vhost \"/\" ...\n"
    );
    let policies = ok(api, &["list_policies"]).await;
    assert_eq!(
        policies,
        "Listing policies for vhost \"/\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tlimit\t^limited\\.\tqueues\t{\"max-length\":2}\t5\n"
    );
    let json = ok(api, &["--formatter", "json", "list_policies"]).await;
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        parsed[0]["definition"],
        serde_json::json!({"max-length": 2})
    );
    assert_eq!(parsed[0]["apply-to"], "queues");

    fails(
        api,
        &["set_policy", "broken", ".*", "{not json"],
        DATA,
        "not valid JSON",
    )
    .await;
    fails(
        api,
        &["set_policy", "list", ".*", "[1]"],
        DATA,
        "must be a JSON object",
    )
    .await;
    assert_eq!(
        ok(api, &["clear_policy", "limit"]).await,
        "Clearing policy \"limit\" on vhost \"/\" ...\n"
    );
    assert_eq!(
        ok(api, &["-q", "list_policies"]).await,
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n"
    );
    fails(
        api,
        &["clear_policy", "limit"],
        DATA,
        "Policy \"limit\" does not exist",
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn queues_are_purged_and_deleted() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::confirm_channel(&connection).await;
    let queue = common::shared_queue(&channel, "purged").await;
    for _ in 0..3 {
        common::publish(&channel, "", &queue, b"x").await;
    }
    assert_eq!(
        ok(api, &["purge_queue", &queue]).await,
        format!("Purging queue '{queue}' in vhost '/' ...\n")
    );
    assert_eq!(
        ok(api, &["-q", "list_queues"]).await,
        format!("name\tmessages\n{queue}\t0\n")
    );

    for _ in 0..2 {
        common::publish(&channel, "", &queue, b"y").await;
    }
    let refused = ctl(api, &["delete_queue", &queue, "--if-empty"]).await;
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.starts_with("Error: "), "{refused:?}");
    assert_eq!(
        ok(api, &["-q", "list_queues"]).await,
        format!("name\tmessages\n{queue}\t2\n"),
        "an --if-empty delete of a queue with messages keeps it"
    );
    // rabbitmqctl 3.10:
    //   Deleting queue 'q' on vhost '/' ...
    //   Queue was successfully deleted with 2 messages
    assert_eq!(
        ok(api, &["delete_queue", &queue, "-u"]).await,
        format!(
            "Deleting queue '{queue}' on vhost '/' ...\nQueue was successfully deleted with 2 messages\n"
        )
    );
    assert_eq!(ok(api, &["-q", "list_queues"]).await, "name\tmessages\n");
    common::close(connection).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn exchanges_and_bindings_are_listed() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::channel(&connection).await;
    let exchange = common::unique("ctl-x");
    common::within(
        "exchange.declare",
        channel.exchange_declare(
            &exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let queue = common::exclusive_queue(&channel, "bound").await;
    common::within(
        "queue.bind",
        channel.queue_bind(
            &queue,
            &exchange,
            "sensors.*",
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();

    // rabbitmqctl 3.10:
    //   Listing exchanges for vhost / ...
    //   name	type
    let exchanges = ok(api, &["list_exchanges"]).await;
    let shown = lines(&exchanges);
    assert_eq!(shown[0], "Listing exchanges for vhost / ...");
    assert_eq!(shown[1], "name\ttype");
    assert!(
        shown.contains(&format!("{exchange}\ttopic").as_str()),
        "{exchanges}"
    );
    assert!(shown.contains(&"amq.fanout\tfanout"), "{exchanges}");
    let columns = ok(
        api,
        &[
            "-q",
            "list_exchanges",
            "name",
            "durable",
            "auto_delete",
            "internal",
            "arguments",
        ],
    )
    .await;
    assert!(
        lines(&columns).contains(&format!("{exchange}\tfalse\ttrue\tfalse\t[]").as_str()),
        "{columns}"
    );

    // rabbitmqctl 3.10:
    //   Listing bindings for vhost /...
    //   source_name	source_kind	destination_name	destination_kind	routing_key	arguments
    let bindings = ok(api, &["list_bindings"]).await;
    let shown = lines(&bindings);
    assert_eq!(shown[0], "Listing bindings for vhost /...");
    assert_eq!(
        shown[1],
        "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments"
    );
    assert!(
        shown.contains(&format!("{exchange}\texchange\t{queue}\tqueue\tsensors.*\t[]").as_str()),
        "{bindings}"
    );
    common::close(connection).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn definitions_are_exported_and_imported() {
    let (broker, api) = broker().await;
    ok(api, &["-q", "add_vhost", "exported"]).await;
    ok(api, &["-q", "add_user", "carol", "pw"]).await;
    ok(
        api,
        &[
            "-q",
            "-p",
            "exported",
            "set_permissions",
            "carol",
            ".*",
            ".*",
            ".*",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    let path = file.to_str().unwrap();
    assert_eq!(
        ok(api, &["export_definitions", path]).await,
        format!("Exporting definitions in JSON to a file at \"{path}\" ...\n")
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let names = |key: &str, value: &Value| -> Vec<String> {
        value[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {value}"))
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("users", &written).contains(&"carol".to_string()));
    assert!(names("vhosts", &written).contains(&"exported".to_string()));
    // To stdout, nothing but the JSON.
    let stdout = ok(api, &["export_definitions", "-"]).await;
    let printed: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(names("users", &printed).contains(&"carol".to_string()));

    ok(api, &["-q", "delete_user", "carol"]).await;
    ok(api, &["-q", "delete_vhost", "exported"]).await;
    assert_eq!(
        ok(api, &["import_definitions", path]).await,
        format!("Importing definitions in JSON from a file at \"{path}\" ...\n")
    );
    assert!(ok(api, &["-q", "list_users"]).await.contains("carol\t[]"));
    assert!(lines(&ok(api, &["-q", "list_vhosts"]).await).contains(&"exported"));
    let permissions = ok(api, &["-q", "list_user_permissions", "carol"]).await;
    assert!(
        lines(&permissions).contains(&"exported\t.*\t.*\t.*"),
        "{permissions}"
    );

    // From stdin.
    let run = ctl_with_input(
        api,
        &["import_definitions", "-"],
        r#"{"vhosts": [{"name": "from-stdin"}]}"#,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Importing definitions in JSON from standard input ...\n"
    );
    assert!(lines(&ok(api, &["-q", "list_vhosts"]).await).contains(&"from-stdin"));
    let run = ctl_with_input(api, &["import_definitions"], "{not json").await;
    assert_eq!(run.code, DATA, "{run:?}");
    assert!(run.stderr.contains("not valid JSON"), "{run:?}");
    fails(
        api,
        &["import_definitions", "/no/such/file.json"],
        66,
        "/no/such/file.json",
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn node_status_environment_report_ping_and_startup() {
    let (broker, api) = broker().await;
    let connection = common::connect(&broker).await;
    let channel = common::channel(&connection).await;
    let queue = common::exclusive_queue(&channel, "reported").await;

    let status = ok(api, &["status"]).await;
    assert!(status.starts_with("Status of node "), "{status}");
    for section in [
        "Runtime",
        "Alarms",
        "Memory",
        "File Descriptors",
        "Free Disk Space",
        "Totals",
        "Listeners",
    ] {
        assert!(lines(&status).contains(&section), "no {section}: {status}");
    }
    assert!(status.contains("\nUptime (seconds): "), "{status}");
    assert!(
        status.contains("\n(none)\n"),
        "no alarms expected: {status}"
    );
    assert!(status.contains("Total memory used: "), "{status}");
    assert!(status.contains("Queue count: 1\n"), "{status}");
    assert!(status.contains("Connection count: 1\n"), "{status}");
    let amqp = broker.amqp_addr().port();
    assert!(
        status.contains(&format!(
            "Interface: 127.0.0.1, port: {amqp}, protocol: amqp, purpose: AMQP 0-9-1"
        )),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "Interface: 127.0.0.1, port: {}, protocol: http, purpose: HTTP API",
            api.port()
        )),
        "{status}"
    );
    let json = ok(api, &["--formatter", "json", "status"]).await;
    let parsed: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(parsed["totals"]["queue_count"], 1);
    assert!(parsed["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["protocol"] == "amqp" && l["port"] == amqp));
    // A node name is accepted (and ignored), as rabbitmqctl's -n.
    ok(api, &["-n", "warren@elsewhere", "-q", "status"]).await;

    let environment = ok(api, &["environment"]).await;
    assert!(
        environment.starts_with("Application environment of node "),
        "{environment}"
    );
    assert!(lines(&environment).contains(&"key\tvalue"), "{environment}");
    assert!(
        environment
            .lines()
            .any(|line| line.starts_with("mem_used\t")),
        "{environment}"
    );
    let json = ok(api, &["--formatter", "json", "environment"]).await;
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert!(parsed["mem_used"].is_u64(), "{json}");

    let report = ok(api, &["report"]).await;
    for part in [
        "Reporting server status of node ",
        "Listeners",
        "Listing connections ...",
        "Listing channels ...",
        "Listing users ...",
        "Listing vhosts ...",
        "Timeout: 60.0 seconds ...",
        "Listing queues for vhost / ...",
        "Listing exchanges for vhost / ...",
        "Listing bindings for vhost /...",
        "Listing consumers in vhost / ...",
        "Listing permissions for vhost \"/\" ...",
        "Listing policies for vhost \"/\" ...",
    ] {
        assert!(
            report.contains(part),
            "the report has no {part:?}: {report}"
        );
    }
    assert!(report.contains(&format!("\n{queue}\t0\n")), "{report}");
    let json = ok(api, &["--formatter", "json", "report"]).await;
    let parsed: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(parsed["by_vhost"]["/"]["queues"][0]["name"], queue.as_str());

    let ping = ok(api, &["ping"]).await;
    assert!(ping.starts_with("Will ping the node at "), "{ping}");
    assert!(ping.ends_with("Ping succeeded\n"), "{ping}");
    assert_eq!(ok(api, &["-q", "ping"]).await, "Ping succeeded\n");
    ok(api, &["await_startup"]).await;
    ok(api, &["-t", "5", "await_startup"]).await;
    common::close(connection).await;
    broker.shutdown().await;
}
