//! Runs the Python client scripts in `tests/python/` (paho-mqtt, pika) against the broker.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The whole script gets this long (the cross-protocol script moves 10,000 messages).
pub(crate) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Fails the test (never skips it) unless python3 can import every module.
pub(crate) async fn require_modules(modules: &[&str]) {
    let requirements = python_dir().join("requirements.txt");
    for module in modules {
        let probe = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .await;
        match probe {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "{module} is not installed for python3 ({}); run: pip install -r {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("import failed"),
                requirements.display()
            ),
            Err(e) => panic!(
                "cannot run python3 ({e}); install Python 3, then: pip install -r {}",
                requirements.display()
            ),
        }
    }
}

/// Runs `tests/python/<script> <amqp> <mqtt>` and asserts it exits 0, showing its output if not.
pub(crate) async fn run_script(script: &str, amqp: &str, mqtt: &str) {
    let path = python_dir().join(script);
    let child = Command::new("python3")
        .arg(&path)
        .arg(amqp)
        .arg(mqtt)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3");
    let output = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("python3 runs"),
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
