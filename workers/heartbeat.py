"""Worker liveness: a heartbeat row per worker, written when it finishes work or looks for more."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_identity: dict[str, Any] = {}  # name and queues of this process's worker, once its consumer starts
_last_beat = 0.0


def heartbeat(*, force: bool = False) -> None:
    """Record that this worker is alive, at most once per half heartbeat interval unless ``force``.

    A failure is logged, never raised: liveness reporting must not stop the work it reports on.
    """
    global _last_beat
    from django.db import DatabaseError

    from moderation.conf import moderation_settings
    from moderation.services.heartbeats import worker_heartbeat_record

    if not _identity:
        return
    now = time.monotonic()
    with _lock:
        if not force and now - _last_beat < moderation_settings.WORKER_HEARTBEAT_INTERVAL / 2:
            return
        _last_beat = now
    try:
        worker_heartbeat_record(worker=_identity["name"], queues=_identity["queues"], pid=os.getpid(),
                                started=force)
    except DatabaseError as exc:
        logger.warning("Heartbeat of %s not recorded: %s", _identity["name"], exc)


class Heartbeat(bootsteps.StartStopStep):
    """Beats when the consumer starts (and after every broker reconnection), then on the
    consumer's timer. With the Redis transport that timer runs in the worker's event loop,
    which a running task blocks, so a beat means the worker really was looking for work."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.entry: Any = None

    def start(self, parent: Any) -> None:
        from moderation.conf import moderation_settings
        from workers.pipeline import worker_name

        queues = sorted(q.name for q in parent.task_consumer.queues)
        _identity.update(name=worker_name(parent.hostname), queues=queues)
        heartbeat(force=True)
        self.entry = parent.timer.call_repeatedly(moderation_settings.WORKER_HEARTBEAT_INTERVAL, heartbeat)

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None
