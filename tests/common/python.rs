//! Finds the Python interpreter the Python-client tests (pika, paho-mqtt) run, and checks that
//! it has the client libraries.
//!
//! `scripts/test.sh` installs `tests/python/requirements.txt` into the project's `.venv` and
//! exports [`PYTHON`] pointing at it, because Debian's system Python refuses `pip install`
//! (PEP 668).

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// Environment variable naming the Python interpreter to run the client scripts with.
pub(crate) const PYTHON: &str = "WARREN_TEST_PYTHON";

/// The interpreter: `$WARREN_TEST_PYTHON`, else the project's `.venv` (so that a plain
/// `cargo test` after one `scripts/test.sh` run finds the libraries), else `python3` from PATH.
pub(crate) fn interpreter() -> PathBuf {
    if let Some(python) = std::env::var_os(PYTHON).filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// The directory holding the client scripts and their `requirements.txt`.
pub(crate) fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Fails the test (never skips it) unless the interpreter can import every module.
pub(crate) async fn require_modules(modules: &[&str]) {
    let python = interpreter();
    let hint = format!(
        "run ./scripts/test.sh (it installs {} into .venv), or set {PYTHON} to an interpreter \
         that has them",
        scripts_dir().join("requirements.txt").display()
    );
    for module in modules {
        let probe = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .await;
        match probe {
            Ok(output) if output.status.success() => {}
            Ok(output) => panic!(
                "{module} is not installed for {} ({}); {hint}",
                python.display(),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("import failed"),
            ),
            Err(e) => panic!("cannot run {} ({e}); {hint}", python.display()),
        }
    }
}
