//! A real Celery deployment against warren: the `proj` project in `tests/python/celery/` (tasks
//! in `proj/app1`, `proj/app2`, `proj/app3`, the deployment's settings in
//! `proj/celeryconfig.py`: priority queues `queue1` and `queue2`, the default queue `default`,
//! JSON, prefetch multiplier 4, acks_late False, persistent delivery, `rpc://` results).
//!
//! Each test starts its own broker, a `celery -A proj worker` subprocess consuming
//! `queue1,queue2,default` (prefork pool, in a process group of its own so that the pool's
//! children go with it), then `tests/python/celery/driver.py` with one scenario:
//!
//! - `routes`: 24 tasks, task1 → queue1, task2 → queue2 (the deployment's routes) and an
//!   unrouted task3 → default, every result back over `rpc://` with the right value;
//! - `priority`: with one worker process, a priority-9 task overtakes 30 queued low-priority
//!   ones;
//! - `ping`: `celery -A proj inspect ping` and `app.control.inspect().ping()` reach the worker
//!   through the pidbox exchanges;
//! - `redelivery`: with `task_acks_late = True` (the only scenario that changes a setting), a
//!   worker killed with SIGKILL mid-task loses its connection, warren requeues the unacked task,
//!   a second worker runs it again (`redelivered`) and the result reaches the client.
//!
//! Celery is required, not optional: without it in the test interpreter (see
//! `common::python`) the tests fail and say how to install it.
//!
//! These tests always run warren in-process, never a broker named by `WARREN_TEST_EXTERNAL_AMQP`:
//! the deployment's queue and exchange names are fixed, so tests sharing one broker would take
//! each other's tasks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use common::{External, TestBroker};

/// How long one driver run may take (its own waits are bounded more tightly).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a worker gets to finish a warm shutdown (SIGTERM) before it is killed.
const WORKER_STOP: Duration = Duration::from_secs(15);
/// How long the redelivery scenario waits for the first worker to start the task.
const TASK_START: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_routes_tasks_to_all_three_queues_and_returns_results_over_rpc() {
    scenario("routes", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_high_priority_task_overtakes_a_queued_backlog() {
    scenario("priority", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_inspect_ping_reaches_the_worker() {
    scenario("ping", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_acks_late_task_of_a_killed_worker_runs_on_another_worker() {
    common::python::require_modules(&["celery"]).await;
    let broker = start_broker().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = broker_url(&broker);
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).expect("create the marks directory");

    let first = Worker::start(&url, "first", 1, true, dir.path());
    let driver = Driver::spawn(&url, &["redelivery", &marks.to_string_lossy()], true);
    // The task writes `started-1` and then hangs: the first worker is busy with it and has not
    // acknowledged it (acks_late).
    let started = marks.join("started-1");
    let deadline = Instant::now() + TASK_START;
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the first worker did not start the task within {TASK_START:?}\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_log = first.kill().await;
    assert!(
        !marks.join("started-2").exists(),
        "the task ran twice before its worker was killed\n{first_log}"
    );

    let second = Worker::start(&url, "second", 1, true, dir.path());
    let output = driver.finish().await;
    check(
        "redelivery",
        &output,
        &[("first", first_log), ("second", second.log())],
    );
    second.stop().await;
    broker.shutdown().await;
}

/// One worker (`concurrency` prefork processes, acks_late False as deployed) and one driver run.
async fn scenario(mode: &str, concurrency: u32) {
    common::python::require_modules(&["celery"]).await;
    let broker = start_broker().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = broker_url(&broker);
    let worker = Worker::start(&url, "worker", concurrency, false, dir.path());
    let output = Driver::spawn(&url, &[mode], false).finish().await;
    check(mode, &output, &[("worker", worker.log())]);
    worker.stop().await;
    broker.shutdown().await;
}

async fn start_broker() -> TestBroker {
    TestBroker::options()
        .external(External::Never)
        .start()
        .await
}

/// The deployment's `broker_url`, pointed at the test broker (guest, vhost `/`).
fn broker_url(broker: &TestBroker) -> String {
    format!("amqp://guest:guest@{}//", broker.amqp_addr())
}

/// `tests/python/celery`: the `proj` package and the driver.
fn project_dir() -> PathBuf {
    common::python::scripts_dir().join("celery")
}

/// A Python command in the project directory, configured through the environment that
/// `proj/celeryconfig.py` reads.
fn python(url: &str, acks_late: bool) -> Command {
    let dir = project_dir();
    let mut command = Command::new(common::python::interpreter());
    command
        .current_dir(&dir)
        .env("PYTHONPATH", &dir)
        .env("PYTHONUNBUFFERED", "1")
        .env("WARREN_CELERY_BROKER_URL", url)
        .env("WARREN_CELERY_ACKS_LATE", if acks_late { "1" } else { "0" })
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Panics with the driver's and the workers' output unless the driver succeeded (its output is
/// printed either way: `--nocapture` shows it).
fn check(mode: &str, output: &Output, workers: &[(&str, String)]) {
    if output.status.success() {
        println!(
            "driver.py {mode}:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        return;
    }
    let mut logs = String::new();
    for (name, log) in workers {
        logs.push_str(&format!("--- {name} worker log\n{log}\n"));
    }
    panic!(
        "driver.py {mode} failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n{logs}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// `driver.py` running one scenario.
struct Driver {
    child: Child,
    mode: String,
}

impl Driver {
    fn spawn(url: &str, args: &[&str], acks_late: bool) -> Driver {
        let child = python(url, acks_late)
            .arg(project_dir().join("driver.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start driver.py");
        Driver {
            child,
            mode: args[0].to_string(),
        }
    }

    /// Its output once it exits; panics if it runs longer than [`DRIVER_TIMEOUT`] (it is
    /// killed when dropped).
    async fn finish(self) -> Output {
        let mode = self.mode;
        match tokio::time::timeout(DRIVER_TIMEOUT, self.child.wait_with_output()).await {
            Ok(output) => output.expect("wait for driver.py"),
            Err(_) => panic!("driver.py {mode} did not finish within {DRIVER_TIMEOUT:?}"),
        }
    }
}

/// A `celery -A proj worker` process (prefork pool) leading its own process group, its output
/// in a file. Dropping it kills the whole group (the main process and the pool's children), so a
/// failing test leaves no worker behind.
struct Worker {
    child: Child,
    /// The process group: the main process's pid.
    pgid: libc::pid_t,
    log_path: PathBuf,
    /// Set once the group has been killed, so that drop does not signal a reused id.
    gone: bool,
}

impl Worker {
    fn start(url: &str, name: &str, concurrency: u32, acks_late: bool, dir: &Path) -> Worker {
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("create the worker log");
        let child = python(url, acks_late)
            .args(["-m", "celery", "-A", "proj", "worker", "-P", "prefork"])
            .args(["-c", &concurrency.to_string()])
            .args(["-Q", "queue1,queue2,default"])
            .args(["-n", &format!("{name}@%h"), "-l", "info"])
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the celery worker");
        let pgid = child.id().expect("the worker has a pid") as libc::pid_t;
        Worker {
            child,
            pgid,
            log_path,
            gone: false,
        }
    }

    /// What the worker has logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn kill_group(&mut self) {
        if !self.gone {
            // SAFETY: kill(2) with a negative pid signals the process group we created.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
            self.gone = true;
        }
    }

    /// SIGKILL to the whole group (a crash: the AMQP connection drops without a close), and
    /// waits for the main process to be gone. Returns the log.
    async fn kill(mut self) -> String {
        self.kill_group();
        common::within("the killed worker to exit", self.child.wait())
            .await
            .expect("wait for the worker");
        self.log()
    }

    /// SIGTERM (Celery's warm shutdown) to the main process, then SIGKILL to whatever is left
    /// of the group.
    async fn stop(mut self) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pgid, libc::SIGTERM) };
        let exited = tokio::time::timeout(WORKER_STOP, self.child.wait()).await;
        self.kill_group();
        if exited.is_err() {
            self.child.wait().await.expect("wait for the worker");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill_group();
    }
}
