"""The Celery app: configured from Django settings (``CELERY_*``), GPU queue, beat schedule."""
from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings.dev")

app = Celery("vlm_moderation")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # The database is the source of truth; a message only says "look for work".
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue="default",
    task_queues=[Queue("gpu"), Queue("default")],
    task_routes={"moderation.analyze_pending": {"queue": "gpu"}, "moderation.run_requests": {"queue": "gpu"},
                 "moderation.sweep": {"queue": "default"},
                 "moderation.deliver_webhooks": {"queue": "default"},
                 "moderation.purge_content": {"queue": "default"},
                 "moderation.retrain": {"queue": "gpu"}},
    task_soft_time_limit=600,
    task_time_limit=660,
    # Broker outages: a worker never gives up reconnecting (max_retries None) -- a worker that
    # exits on a long outage only adds a restart loop under the supervisor. Unacknowledged wake-ups
    # lost with an emptied Redis cost nothing: beat re-sends sweeps and webhook deliveries, and
    # the sweeper re-wakes the GPU workers for posts left queued. If the worker dies anyway
    # (kombu can raise while restoring unacked messages), its supervisor restarts it and the
    # heartbeat shows the gap (see README, Operations).
    broker_connection_retry=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_connection_timeout=3,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                               "interval_max": 0.5},
    worker_hijack_root_logger=False,
    # Celery's Django fix-up closes the database connection before and after every task unless
    # this is set, so each wake-up would pay for a new PostgreSQL backend. Connections follow
    # CONN_MAX_AGE instead, as in the web process (see workers.tasks._connections_recycle).
    CELERY_DB_REUSE_MAX=2**31,
    beat_schedule={
        "moderation-sweep": {"task": "moderation.sweep",
                             "schedule": float(os.environ.get("MODERATION_SWEEP_INTERVAL", "15"))},
        # Retries of failing webhook deliveries come due without any new verdict to wake them.
        "moderation-webhooks": {"task": "moderation.deliver_webhooks",
                                "schedule": float(os.environ.get("MODERATION_WEBHOOK_INTERVAL", "10"))},
        "moderation-retention": {"task": "moderation.purge_content", "schedule": 3600.0},
        # Trains only when RETRAIN_MIN_NEW_LABELS decisions arrived since the last run.
        "moderation-retrain": {"task": "moderation.retrain", "schedule": 3600.0},
    },
)
# Each worker writes a heartbeat row (see workers.heartbeat); /readyz and the stats page read it.
app.steps["consumer"].add("workers.heartbeat:Heartbeat")
app.autodiscover_tasks(["workers"])
