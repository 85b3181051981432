//! Runs `tests/python/test_pika.py` (pika, the Python AMQP client) against the broker.
//!
//! pika is required, not optional: if `python3 -c "import pika"` fails, this test fails and
//! says how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The whole pika script gets this long (each check does a handful of round trips).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_client_works_against_the_broker() {
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt");
    let probe = Command::new("python3")
        .args(["-c", "import pika"])
        .output()
        .await;
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "pika is not installed for python3 ({}); run: pip install -r {}",
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

    let broker = common::start_broker().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_pika.py");
    let addr = broker.amqp_addr();
    let child = Command::new("python3")
        .arg(&script)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3");
    let output = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("python3 runs"),
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
