"""The deployment configuration warren must run unchanged.

It comes from a Django settings file read with namespace CELERY:

    CELERY_BROKER_URL = "amqp://user:pw@amqp:5672"
    CELERY_ACCEPT_CONTENT = ['json']
    CELERY_RESULT_SERIALIZER = 'json'
    CELERY_EVENT_SERIALIZER = 'json'
    CELERY_TIMEZONE = 'UTC'
    CELERY_ENABLE_UTC = True
    CELERY_WORKER_PREFETCH_MULTIPLIER = 4
    CELERY_TASK_ACKS_LATE = False
    CELERY_TASK_SERIALIZER = 'json'
    CELERY_TASK_QUEUES = (
        Queue('queue1', Exchange('exchange1', type='direct'), routing_key='default',
              queue_arguments={'x-max-priority': 100}),
        Queue('queue2', Exchange('exchange2', type='direct'), routing_key='default',
              queue_arguments={'x-max-priority': 100}),
    )
    CELERY_TASK_DEFAULT_QUEUE = 'default'
    CELERY_TASK_DEFAULT_EXCHANGE = 'default'
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = 'direct'
    CELERY_TASK_DEFAULT_DELIVERY_MODE = 'persistent'
    CELERY_TASK_DEFAULT_ROUTING_KEY = 'default'
    CELERY_TASK_ROUTES = ({"proj.app1.tasks.task1": {"queue": "queue1", "routing_key": "default"}},
                          {"proj.app2.tasks.task2": {"queue": "queue2", "routing_key": "default"}},)
    result backend: rpc://

Below are the same values under Celery's own names. Only two things come from the environment:
the broker URL (the test broker's port is chosen at run time) and, for the redelivery scenario
only, task_acks_late (WARREN_CELERY_ACKS_LATE=1); every other scenario runs acks_late False as
the deployment does.

Note that 'default' is not in task_queues: Celery creates it on demand (task_create_missing_queues
is on by default) as Queue('default', Exchange('default', type='direct'), routing_key='default'),
without x-max-priority, both for a task without a route and for `worker -Q ...,default`.
"""

import os

from kombu import Exchange, Queue

broker_url = os.environ["WARREN_CELERY_BROKER_URL"]
result_backend = "rpc://"

accept_content = ["json"]
result_serializer = "json"
event_serializer = "json"
timezone = "UTC"
enable_utc = True
worker_prefetch_multiplier = 4
task_acks_late = os.environ.get("WARREN_CELERY_ACKS_LATE", "0") == "1"
task_serializer = "json"
task_queues = (
    Queue(
        "queue1",
        Exchange("exchange1", type="direct"),
        routing_key="default",
        queue_arguments={"x-max-priority": 100},
    ),
    Queue(
        "queue2",
        Exchange("exchange2", type="direct"),
        routing_key="default",
        queue_arguments={"x-max-priority": 100},
    ),
)
task_default_queue = "default"
task_default_exchange = "default"
task_default_exchange_type = "direct"
task_default_delivery_mode = "persistent"
task_default_routing_key = "default"
task_routes = (
    {"proj.app1.tasks.task1": {"queue": "queue1", "routing_key": "default"}},
    {"proj.app2.tasks.task2": {"queue": "queue2", "routing_key": "default"}},
)
