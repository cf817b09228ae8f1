"""Liveness and readiness probes."""
from __future__ import annotations

from celery import current_app
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from kombu.exceptions import KombuError, OperationalError

from moderation.conf import moderation_settings
from moderation.selectors.workers import worker_seen_within

BROKER_TIMEOUT_S = 2.0


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    if checks["database"]:
        checks.update(_workers_ok())
    ready = all(checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status=200 if ready else 503)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def _broker_ok() -> bool:
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
        return True
    except (OperationalError, KombuError, OSError):
        return False


def _workers_ok() -> dict[str, bool]:
    """For each queue whose READY_*_WORKER_MAX_AGE is set: was a worker of it seen that recently?

    A worker that died (or hangs) stops beating, so this turns red even while the broker and the
    database are fine and nothing else would say that no one is doing the work.
    """
    s = moderation_settings
    limits = {"gpu_worker": (s.GPU_QUEUE, s.READY_GPU_WORKER_MAX_AGE),
              "default_worker": (s.DEFAULT_QUEUE, s.READY_DEFAULT_WORKER_MAX_AGE)}
    return {check: worker_seen_within(queue=queue, seconds=float(age))
            for check, (queue, age) in limits.items() if age is not None}
