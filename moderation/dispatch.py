"""Wake the GPU workers after a commit, by task name (the app never imports ``workers``)."""
from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import KombuError, OperationalError

from moderation.conf import moderation_settings

logger = logging.getLogger(__name__)


def analysis_wakeup() -> None:
    """Ask a worker to look for queued posts once the current transaction commits.

    The database is the source of truth: a lost message only delays a post until
    the sweeper's next run, so a broker outage never fails the caller.
    """
    transaction.on_commit(_analysis_wakeup_send)


def _analysis_wakeup_send() -> None:
    try:
        current_app.send_task(moderation_settings.ANALYZE_TASK, queue=moderation_settings.GPU_QUEUE,
                              ignore_result=True)
    except (OperationalError, KombuError, OSError) as exc:
        logger.warning("Broker unreachable, the sweeper will wake the workers later: %s", exc)
