"""The Celery app: configured from Django settings (``CELERY_*``), queues, routes and beat from ``MODERATION``.

The site names its settings module (``DJANGO_SETTINGS_MODULE``); this package assumes none.
Queues, routes and the beat schedule are read from ``MODERATION`` when the app is first
configured, not at import, so ``mysite/__init__.py`` can import this module before the
settings are loaded.
"""
from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.loaders.app import AppLoader
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue


def _settings_required() -> None:
    from django.conf import settings

    if not (os.environ.get("DJANGO_SETTINGS_MODULE") or settings.configured):
        raise ImproperlyConfigured(
            "The moderation workers read your Django settings: set DJANGO_SETTINGS_MODULE "
            "(e.g. DJANGO_SETTINGS_MODULE=mysite.settings celery -A workers worker ...).")


class SettingsModuleLoader(AppLoader):
    """Celery's app loader, refusing to read Django settings that nobody named."""

    def config_from_object(self, obj: Any, silent: bool = False) -> Any:
        _settings_required()
        return super().config_from_object(obj, silent=silent)


app = Celery("vlm_moderation", loader="workers.celery:SettingsModuleLoader")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # The database is the source of truth; a message only says "look for work".
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
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
)


def moderation_celery_config() -> dict[str, Any]:
    """Queues, routes and beat schedule from the MODERATION settings."""
    from moderation.conf import moderation_settings as s

    gpu, default = s.GPU_QUEUE, s.DEFAULT_QUEUE
    beat = {
        "moderation-sweep": {"task": "moderation.sweep", "schedule": float(s.SWEEP_INTERVAL)},
        # Retries of failing webhook deliveries come due without any new verdict to wake them.
        "moderation-webhooks": {"task": s.WEBHOOK_TASK, "schedule": float(s.WEBHOOK_INTERVAL)},
        "moderation-retention": {"task": "moderation.purge_content", "schedule": 3600.0},
        # Trains only when RETRAIN_MIN_NEW_LABELS decisions arrived since the last run.
        "moderation-retrain": {"task": "moderation.retrain", "schedule": 3600.0},
    }
    if s.TRANSPARENCY_DB_URL:
        # Records new restricting decisions and sends them, and the retries that came due.
        beat["moderation-statements"] = {"task": "moderation.submit_statements",
                                         "schedule": float(s.TRANSPARENCY_DB_INTERVAL)}
    return {
        "task_default_queue": default,
        "task_queues": [Queue(gpu), Queue(default)],
        "task_routes": {s.ANALYZE_TASK: {"queue": gpu}, s.REQUEST_TASK: {"queue": gpu},
                        "moderation.retrain": {"queue": gpu},
                        s.WEBHOOK_TASK: {"queue": default}, "moderation.sweep": {"queue": default},
                        "moderation.purge_content": {"queue": default},
                        "moderation.submit_statements": {"queue": default}},
        "beat_schedule": beat,
    }


def _moderation_configure(sender: Celery, **kwargs: Any) -> None:
    sender.conf.update(moderation_celery_config())


app.on_after_configure.connect(_moderation_configure, weak=False)


# Each worker writes a heartbeat row (see workers.heartbeat); /readyz and the stats page read it.
app.steps["consumer"].add("workers.heartbeat:Heartbeat")
app.autodiscover_tasks(["workers"])
import workers.bootstrap  # noqa: E402,F401  (connects the worker start-up checks)
