//! Runs `tests/python/test_pika.py` (pika, the Python AMQP client) against the broker.
//!
//! pika is required, not optional: if the test interpreter (`.venv/bin/python`, made by
//! `scripts/test.sh`, or `$WARREN_TEST_PYTHON`) cannot import pika, this test fails and says how
//! to install it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The whole pika script gets this long (each check does a handful of round trips).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_client_works_against_the_broker() {
    common::python::require_modules(&["pika"]).await;

    let broker = common::TestBroker::start().await;
    let script = common::python::scripts_dir().join("test_pika.py");
    let python = common::python::interpreter();
    let addr = broker.amqp_addr();
    let child = Command::new(&python)
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
    let output = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("{} runs: {e}", python.display())),
        Err(_) => panic!(
            "{} did not finish within {SCRIPT_TIMEOUT:?}",
            script.display()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        output.status
    );
    broker.shutdown().await;
}
