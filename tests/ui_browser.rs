//! The management web UI in a real browser: runs `tests/python/test_ui.py` (Selenium 4 driving
//! Debian's headless Chromium through its chromedriver) against an in-process broker with the
//! management listener on. The script logs in (a wrong password first), checks every page against
//! what pika and paho-mqtt clients put there (a queue with messages, publish and get from the
//! queue page, an MQTT device's connection, session, subscription and retained message), adds a
//! user and its permissions on the admin page and connects as that user, saves a screenshot of
//! every page into `target/ui-screenshots/`, and fails on SEVERE browser console entries.
//!
//! Then it measures, without asserting anything, how long the queues and overview pages take to
//! render with 10,000 queues: when the script asks on its stdout, this test declares them
//! in-process (much faster than over AMQP) and answers on its stdin. The `render … 10000: N ms`
//! lines are written to the test's stderr directly, so they are in the test log whether or not
//! the output is captured.
//!
//! Chromium, chromedriver, selenium, pika and paho-mqtt are required, not optional: without them
//! this test fails and says how to install them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use warren::core::{ConnectionId, QueueDeclare};

/// The whole browser script gets this long (it takes about 10 s; each of its waits is bounded at
/// 15 s, the 10,000-queue pages' at 30 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// What the script prints when it wants the 10,000 queues (see `PERF_REQUEST_LINE` there).
const PERF_REQUEST: &str = "WARREN-UI-TEST: declare 10000 queues named ui-perf-00000..";
const PERF_QUEUES: usize = 10_000;

const INSTALL: &str = "on Debian/Ubuntu: apt-get install --no-install-recommends chromium \
                       chromium-driver (.ci/run installs them)";

/// `name` on PATH, else in /usr/bin.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Fails the test (never skips it) without a browser and its driver.
fn require_browser() {
    let chromium = program("chromium").or_else(|| program("chromium-browser"));
    let chromedriver = program("chromedriver");
    if chromium.is_none() || chromedriver.is_none() {
        panic!(
            "the UI browser test needs Chromium and chromedriver (found: chromium {}, \
             chromedriver {}); {INSTALL}",
            chromium.map_or("missing".into(), |p| p.display().to_string()),
            chromedriver.map_or("missing".into(), |p| p.display().to_string()),
        );
    }
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")
}

/// Writes past the test harness's output capture, so the line is in the log either way.
fn log(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_ui_in_a_headless_browser() {
    require_browser();
    common::python::require_modules(&["selenium", "pika", "paho.mqtt"]).await;

    let (broker, management) = common::broker_with_management().await;
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("create {}: {e}", shots.display()));
    for entry in std::fs::read_dir(&shots).unwrap().flatten() {
        if entry
            .path()
            .extension()
            .is_some_and(|e| e == "png" || e == "html")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    let script = common::python::scripts_dir().join("test_ui.py");
    let python = common::python::interpreter();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(management.to_string())
        .arg(broker.amqp_addr().port().to_string())
        .arg(broker.mqtt_addr().port().to_string())
        .arg(&shots)
        .arg("--perf-queues=stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text).await;
        text
    });

    let started = Instant::now();
    let vhost = broker.in_process().core().vhost("/").expect("vhost /");
    let mut lines = Vec::new();
    let finished = tokio::time::timeout(SCRIPT_TIMEOUT, async {
        while let Some(line) = stdout.next_line().await.expect("read the script's stdout") {
            if line.starts_with(PERF_REQUEST) {
                let declaring = Instant::now();
                for n in 0..PERF_QUEUES {
                    let declare = QueueDeclare {
                        name: format!("ui-perf-{n:05}"),
                        ..Default::default()
                    };
                    vhost
                        .declare_queue(declare, ConnectionId(0))
                        .unwrap_or_else(|e| panic!("declare queue {n}: {e:?}"));
                }
                let took = declaring.elapsed();
                lines.push(format!(
                    "(declared {PERF_QUEUES} queues in-process in {} ms)",
                    took.as_millis()
                ));
                stdin.write_all(b"done\n").await.expect("answer the script");
                stdin.flush().await.expect("answer the script");
            } else {
                lines.push(line);
            }
        }
        child.wait().await
    })
    .await;
    let stdout = lines.join("\n");
    let status = match finished {
        Ok(status) => status.unwrap_or_else(|e| panic!("{} runs: {e}", python.display())),
        Err(_) => panic!(
            "{} did not finish within {SCRIPT_TIMEOUT:?}; so far:\n{stdout}",
            script.display()
        ),
    };
    let stderr = common::within("the script's stderr", stderr).await.unwrap();
    if status.success() {
        // The rendering times with 10,000 queues, the steps' durations, the screenshots.
        log(&format!(
            "ui_browser: {} passed in {:.1} s; screenshots in {}\n{stdout}",
            script.display(),
            started.elapsed().as_secs_f64(),
            shots.display()
        ));
    }
    assert!(
        status.success(),
        "{} failed ({status}); screenshots (failure.png, failure.html) in {}:\n--- stdout\n\
         {stdout}\n--- stderr\n{stderr}",
        script.display(),
        shots.display()
    );
    broker.shutdown().await;
}
