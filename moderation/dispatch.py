"""Send tasks to the workers after a commit, by name (the app never imports ``workers``)."""
from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import KombuError, OperationalError

from moderation.conf import moderation_settings

logger = logging.getLogger(__name__)


def analysis_wakeup() -> None:
    """Ask a GPU worker to look for queued posts once the current transaction commits.

    The database is the source of truth: a lost message only delays a post until
    the sweeper's next run, so a broker outage never fails the caller.
    """
    task_send_on_commit(moderation_settings.ANALYZE_TASK, queue=moderation_settings.GPU_QUEUE)


def task_send_on_commit(name: str, *, queue: str) -> None:
    """Send the argument-less task ``name`` after commit; nothing is sent if the transaction rolls back."""
    transaction.on_commit(lambda: _task_send(name, queue))


def _task_send(name: str, queue: str) -> None:
    try:
        # One quick retry at most: the request that committed must not hang on a dead broker.
        current_app.send_task(name, queue=queue, ignore_result=True, retry=True,
                              retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1})
    except (OperationalError, KombuError, OSError) as exc:
        logger.warning("Broker unreachable, the sweeper will resend %s later: %s", name, exc)
