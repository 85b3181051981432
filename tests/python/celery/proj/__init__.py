# The Celery app is loaded when Django (here: `celery -A proj`) imports the project package.
from .celery import app as celery_app

__all__ = ("celery_app",)
