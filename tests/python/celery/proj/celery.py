"""The Celery application of the `proj` project (the usual Django layout: proj/celery.py)."""

from celery import Celery

app = Celery(
    "proj",
    include=["proj.app1.tasks", "proj.app2.tasks", "proj.app3.tasks"],
)
# The deployment's settings, translated from the Django settings file (namespace CELERY) to
# Celery's lowercase names.
app.config_from_object("proj.celeryconfig")
