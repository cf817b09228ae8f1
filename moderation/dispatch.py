"""Send tasks to the workers after a commit, by name (the app never imports ``workers``).

Messages are wake-ups without arguments, so they are published from a background thread:
the request that committed does not wait on the broker, and wake-ups asked for while one
is being sent, or within ``WAKEUP_INTERVAL`` after it, are merged into the next (every
merged commit happened before it is sent, so the worker it wakes sees them all). Under
load this turns one message per post into a few per second, each of which would otherwise
cost the worker a task run and an empty claim. The database is the source of truth: a wake-up lost
with a dying process only delays its posts until the sweeper's next run.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from celery import current_app
from django.db import transaction
from kombu.exceptions import KombuError, OperationalError

from moderation.conf import moderation_settings

logger = logging.getLogger(__name__)


def analysis_wakeup() -> None:
    """Ask a GPU worker to look for queued posts once the current transaction commits."""
    task_send_on_commit(moderation_settings.ANALYZE_TASK, queue=moderation_settings.GPU_QUEUE)


def task_send_on_commit(name: str, *, queue: str) -> None:
    """Send the argument-less task ``name`` after commit; nothing is sent if the transaction rolls back."""
    transaction.on_commit(lambda: _publisher().request(name, queue))


def task_publisher_flush(timeout: float = 10.0) -> bool:
    """Wait until every wake-up asked for so far has been handed to the broker (tests, shutdown)."""
    return _publisher().flush(timeout)


class _Publisher:
    """One daemon thread per process that sends the pending wake-ups, each at most once per round."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._pending: set[tuple[str, str]] = set()
        self._condition = threading.Condition()
        self._busy = False
        threading.Thread(target=self._run, name="moderation-wakeups", daemon=True).start()

    def request(self, name: str, queue: str) -> None:
        with self._condition:
            self._pending.add((name, queue))
            self._condition.notify_all()

    def flush(self, timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        last_sent = float("-inf")
        while True:
            with self._condition:
                self._condition.wait_for(lambda: bool(self._pending))
                self._busy = True
            # Right after a send, hold the next one back a little so the commits in between share it.
            if (delay := last_sent + moderation_settings.WAKEUP_INTERVAL - time.monotonic()) > 0:
                time.sleep(delay)
            with self._condition:
                batch, self._pending = self._pending, set()
            for name, queue in sorted(batch):
                _task_send(name, queue)
            last_sent = time.monotonic()
            with self._condition:
                self._busy = False
                self._condition.notify_all()


_instance: _Publisher | None = None
_instance_lock = threading.Lock()


def _publisher() -> _Publisher:
    """The process's publisher; a forked child (gunicorn, Celery prefork) starts its own thread."""
    global _instance
    with _instance_lock:
        if _instance is None or _instance.pid != os.getpid():
            _instance = _Publisher()
        return _instance


def _task_send(name: str, queue: str) -> None:
    try:
        # One quick retry at most: a dead broker must not stall the wake-ups behind this one.
        current_app.send_task(name, queue=queue, ignore_result=True, retry=True,
                              retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1})
    except (OperationalError, KombuError, OSError) as exc:
        logger.warning("Broker unreachable, the sweeper will resend %s later: %s", name, exc)
    except Exception:  # noqa: BLE001 — the thread must outlive any failure, or this process wakes no one again
        logger.exception("Sending %s failed; the sweeper will resend it later", name)
