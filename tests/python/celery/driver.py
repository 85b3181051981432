"""Drives the Celery scenarios of tests/celery.rs against a worker the Rust test started.

    python driver.py routes              # 24 tasks over queue1, queue2 and default, results over rpc://
    python driver.py priority            # a priority-9 task overtakes a queued low-priority backlog
    python driver.py ping                # `celery -A proj inspect ping` and app.control.inspect().ping()
    python driver.py redelivery DIR      # acks_late: a task whose worker was SIGKILLed runs again

Run from this directory (or with it on PYTHONPATH) with WARREN_CELERY_BROKER_URL set. Exits 0 when
every check passes; a failed check raises. Every wait is bounded.
"""

import json
import os
import subprocess
import sys
import time

from proj.celery import app
from proj.app1.tasks import task1
from proj.app2.tasks import task2
from proj.app3.tasks import task3, crash_once

RESULT_TIMEOUT = 30.0


def log(*args):
    print(*args, flush=True)


def wait_for_worker(limit=40.0):
    """Until some worker answers a broadcast ping (it has started consuming)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if replies:
            log("worker ready:", replies)
            return replies
    raise AssertionError(f"no worker answered a ping within {limit}s")


def check_routes():
    wait_for_worker()
    pending = []
    for i in range(8):
        pending.append(("task1", i, task1.delay(i, 100)))
        pending.append(("task2", i, task2.delay(i, 7)))
        pending.append(("task3", i, task3.delay(f"msg-{i}")))
    assert len(pending) >= 20
    expected_queue = {"task1": "queue1", "task2": "queue2", "task3": "default"}
    for name, i, result in pending:
        value = result.get(timeout=RESULT_TIMEOUT)
        if name == "task1":
            assert value["sum"] == i + 100, value
        elif name == "task2":
            assert value["product"] == i * 7, value
        else:
            assert value["reversed"] == f"msg-{i}"[::-1], value
        # Celery publishes a task for a direct-exchange queue through the default exchange
        # with the queue's name as routing key (amqp.send_task_message "convert to
        # anon-exchange"; it declares the queue, its exchange and binding first), so the
        # delivery says which queue the task came from.
        assert value["exchange"] == "", (name, value)
        assert value["routing_key"] == expected_queue[name], (name, value)
        assert result.successful()
    log(f"routes: {len(pending)} results back over rpc://")


def check_priority(backlog=30, sleep=0.2):
    wait_for_worker()
    low = [task1.apply_async((i, 0), {"sleep": sleep}) for i in range(backlog)]
    # Once the first low task is done the worker is busy with the backlog: it holds a few of
    # them (prefetch 4, one process) and the rest wait in queue1, where the high one must
    # overtake them.
    low[0].get(timeout=RESULT_TIMEOUT)
    high = task1.apply_async((1000, 0), {"sleep": sleep}, priority=9)
    low_values = [r.get(timeout=RESULT_TIMEOUT) for r in low]
    high_value = high.get(timeout=RESULT_TIMEOUT)
    for i, value in enumerate(low_values):
        assert value["sum"] == i, value
    assert high_value["sum"] == 1000, high_value
    assert high_value["priority"] == 9, high_value
    assert all(v["routing_key"] == "queue1" for v in low_values + [high_value])
    # One worker process (-c 1) runs the tasks one after another, so start times order them.
    before = sum(1 for v in low_values if v["started"] < high_value["started"])
    log(f"priority: the priority-9 task started after {before} of {backlog} low-priority tasks")
    # What the worker had already taken (prefetch 4 plus the one running) runs first; the high
    # one then comes before everything still queued. A margin for a slow machine, but it must
    # beat the last 20 of the 30.
    assert before >= 1, before
    assert before <= 10, f"priority 9 did not overtake the backlog: {before} low tasks ran first"


def check_ping():
    replies = wait_for_worker()
    node = next(iter(replies[0]))
    # With a destination, the broadcast returns as soon as that node has answered instead of
    # waiting out the whole timeout.
    inspected = app.control.inspect(destination=[node], timeout=10.0).ping()
    assert inspected == {node: {"ok": "pong"}}, f"inspect().ping(): {inspected!r}"
    log("inspect().ping():", inspected)
    cli = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "proj", "inspect", "ping", "-d", node, "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    log("celery inspect ping:", cli.returncode, cli.stdout, cli.stderr)
    assert cli.returncode == 0, f"celery inspect ping failed ({cli.returncode}): {cli.stderr}"
    assert f"{node}: OK" in cli.stdout and "pong" in cli.stdout, cli.stdout
    assert "1 node online" in cli.stdout, cli.stdout


def check_redelivery(directory):
    wait_for_worker()
    result = crash_once.delay(directory)
    log("redelivery: sent", result.id)
    # The test kills the first worker once `started-1` exists and starts a second one.
    value = result.get(timeout=60.0)
    log("redelivery: result", value)
    assert value["attempt"] == 2, value
    assert value["redelivered"] is True, value
    with open(os.path.join(directory, "started-1")) as f:
        first = json.load(f)
    assert first["redelivered"] is False, first
    assert first["hostname"] != value["hostname"], (first, value)
    assert sorted(n for n in os.listdir(directory) if n.startswith("started-")) == [
        "started-1",
        "started-2",
    ]


def main():
    mode = sys.argv[1]
    # Only the redelivery scenario turns acks_late on; the others run the deployment's False.
    assert app.conf.task_acks_late is (mode == "redelivery"), app.conf.task_acks_late
    if mode == "routes":
        check_routes()
    elif mode == "priority":
        check_priority()
    elif mode == "ping":
        check_ping()
    elif mode == "redelivery":
        check_redelivery(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    log(f"{mode}: OK")


if __name__ == "__main__":
    main()
