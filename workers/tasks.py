"""Celery tasks: thin wrappers that carry no post data, only wake-ups."""
from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.signals import task_postrun, task_prerun, worker_ready
from celery.worker import state as worker_state
from django.db import close_old_connections

from moderation.conf import moderation_settings
from moderation.services.analysis import post_queue_wakeup, post_release_worker_claims, post_sweep
from moderation.services.idempotency import idempotency_expired_delete
from moderation.services.learning import model_train, retrain_due
from moderation.services.requests import requests_release_stale
from moderation.services.retention import post_content_purge
from moderation.services.transparency_db import transparency_db_submit
from moderation.services.webhooks import webhook_deliver_due
from workers.engine import engine_get
from workers.heartbeat import heartbeat
from workers.pipeline import batches_drain, worker_name
from workers.requests import requests_drain

logger = logging.getLogger(__name__)


@shared_task(name="moderation.analyze_pending", bind=True, acks_late=True, reject_on_worker_lost=True)
def analyze_pending(self: Task) -> int:
    """Drain the queue of posts; the message carries nothing but the wake-up."""
    return batches_drain(engine=engine_get, batch_size=moderation_settings.BATCH_SIZE,
                         worker=worker_name(self.request.hostname), stopping=_warm_shutdown_requested,
                         finished=heartbeat)


def _warm_shutdown_requested() -> bool:
    # Set by Celery's SIGTERM handler to the exit code, 0 included (hence identity, not equality);
    # the worker exits once the running task returns.
    flag = worker_state.should_stop
    return flag is not None and flag is not False


@shared_task(name="moderation.run_requests", acks_late=True, reject_on_worker_lost=True)
def run_requests() -> int:
    """Answer pending ad-hoc questions, groundings, captions and search queries."""
    return requests_drain(engine=engine_get, batch_size=moderation_settings.BATCH_SIZE)


@shared_task(name="moderation.retrain", acks_late=True)
def retrain(force: bool = False) -> int | None:
    """Train a candidate head when enough new labels arrived (beat), or now (``force``)."""
    if not (force or retrain_due()):
        return None
    return model_train().version


@shared_task(name="moderation.sweep")
def sweep() -> dict[str, int]:
    released = post_sweep()
    released["requests"] = requests_release_stale(older_than_s=moderation_settings.CLAIM_TIMEOUT)
    released["idempotency_expired"] = idempotency_expired_delete()
    return released


@shared_task(name="moderation.purge_content")
def purge_content() -> int:
    return post_content_purge()


@shared_task(name="moderation.deliver_webhooks", acks_late=True)
def deliver_webhooks() -> dict[str, int]:
    return webhook_deliver_due()


@shared_task(name="moderation.submit_statements", acks_late=True)
def submit_statements() -> dict[str, int]:
    """Send the statements of reasons due to the DSA Transparency Database (the token stays in the settings)."""
    return transparency_db_submit()


@worker_ready.connect
def _worker_ready(sender: object = None, **kwargs: object) -> None:
    # Claims held under this worker's name were left by a process that died (kill -9, OOM).
    name = worker_name(getattr(sender, "hostname", None))
    released = post_release_worker_claims(worker=name)
    if released:
        logger.warning("Released %d posts claimed by a previous run of %s", released, name)
    post_queue_wakeup()


@task_postrun.connect
def _heartbeat_after_task(sender: Task | None = None, **kwargs: object) -> None:
    if sender is not None and not getattr(sender.request, "is_eager", False):
        heartbeat()


@task_prerun.connect
@task_postrun.connect
def _connections_recycle(sender: Task | None = None, **kwargs: object) -> None:
    # What Django does around each request: drop connections that broke or outlived CONN_MAX_AGE.
    # Not for eager calls, which run inside the caller's transaction.
    if sender is not None and not getattr(sender.request, "is_eager", False):
        close_old_connections()
