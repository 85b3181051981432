import os
import time

from celery import shared_task


@shared_task(bind=True)
def task1(self, x, y, sleep=0.0):
    """Routed to queue1 (exchange1, x-max-priority 100). Says when it started, so that the
    priority scenario can put the executions in order (the worker runs one at a time)."""
    started = time.time()
    if sleep:
        time.sleep(sleep)
    info = self.request.delivery_info or {}
    return {
        "sum": x + y,
        "started": started,
        "exchange": info.get("exchange"),
        "routing_key": info.get("routing_key"),
        "priority": info.get("priority"),
        "pid": os.getpid(),
    }
