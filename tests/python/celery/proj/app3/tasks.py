import json
import os
import time

from celery import shared_task


@shared_task(bind=True)
def task3(self, text):
    """No route: goes to the default queue ('default', exchange 'default', key 'default')."""
    info = self.request.delivery_info or {}
    return {"reversed": text[::-1], "exchange": info.get("exchange"), "routing_key": info.get("routing_key")}


@shared_task(bind=True)
def crash_once(self, directory, hang=120.0):
    """No route (default queue). Records each start as `started-N` in `directory`; the first
    run then hangs (the test kills its worker with SIGKILL), a later one returns at once."""
    attempt = 1 + len([n for n in os.listdir(directory) if n.startswith("started-")])
    info = self.request.delivery_info or {}
    record = {
        "attempt": attempt,
        "pid": os.getpid(),
        "hostname": self.request.hostname,
        "redelivered": bool(info.get("redelivered")),
    }
    path = os.path.join(directory, f"started-{attempt}")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.rename(path + ".tmp", path)  # the test sees the file only once it is complete
    if attempt == 1:
        time.sleep(hang)
    return record
