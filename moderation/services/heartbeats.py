"""Worker heartbeats: one row per worker, touched whenever it finishes a task or looks for work."""
from __future__ import annotations

from typing import Sequence

from django.utils import timezone

from moderation.models import WorkerHeartbeat


def worker_heartbeat_record(*, worker: str, queues: Sequence[str], pid: int | None = None,
                            started: bool = False) -> None:
    """Note that ``worker`` is alive now; ``started`` also resets its start time (a new process)."""
    now = timezone.now()
    delimited = "," + ",".join(sorted(set(queues))) + ","
    fields = {"queues": delimited, "pid": pid, "last_seen_at": now}
    if started:
        fields["started_at"] = now
    updated = WorkerHeartbeat.objects.filter(name=worker).update(**fields)
    if not updated:
        WorkerHeartbeat.objects.get_or_create(name=worker, defaults={**fields, "started_at": now})
