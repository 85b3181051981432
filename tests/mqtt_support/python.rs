//! Runs the Python client scripts in `tests/python/` (paho-mqtt, pika) against the broker.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[allow(unused_imports)] // A facade: not every test binary checks modules.
pub(crate) use super::common::python::require_modules;
use super::common::python::{interpreter, scripts_dir};

/// The whole script gets this long (the cross-protocol script moves 10,000 messages).
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs `tests/python/<script> <amqp> <mqtt>` and asserts it exits 0, showing its output if not.
pub(crate) async fn run_script(script: &str, amqp: &str, mqtt: &str) {
    let path = scripts_dir().join(script);
    let python = interpreter();
    let child = Command::new(&python)
        .arg(&path)
        .arg(amqp)
        .arg(mqtt)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
    let output = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("{} runs: {e}", python.display())),
        Err(_) => panic!(
            "{} did not finish within {SCRIPT_TIMEOUT:?}",
            path.display()
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        path.display(),
        output.status
    );
    println!("{stdout}");
}
