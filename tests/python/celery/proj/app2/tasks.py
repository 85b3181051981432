from celery import shared_task


@shared_task(bind=True)
def task2(self, x, y):
    """Routed to queue2 (exchange2, x-max-priority 100)."""
    info = self.request.delivery_info or {}
    return {"product": x * y, "exchange": info.get("exchange"), "routing_key": info.get("routing_key")}
