"""Reads about worker liveness: heartbeats and the oldest webhook still waiting to be delivered."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Min
from django.utils import timezone

from moderation.models import WebhookDelivery, WorkerHeartbeat


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    queues: list[str]
    last_seen_at: datetime
    age_s: float


def workers_seen() -> list[WorkerSeen]:
    """Every worker that ever sent a heartbeat, with how long ago it was last seen."""
    now = timezone.now()
    return [WorkerSeen(name=w.name, queues=[q for q in w.queues.split(",") if q], last_seen_at=w.last_seen_at,
                       age_s=max((now - w.last_seen_at).total_seconds(), 0.0))
            for w in WorkerHeartbeat.objects.order_by("name")]


def worker_seen_within(*, queue: str, seconds: float) -> bool:
    """Whether some worker consuming ``queue`` sent a heartbeat in the last ``seconds``."""
    since = timezone.now() - timedelta(seconds=seconds)
    return WorkerHeartbeat.objects.filter(queues__contains=f",{queue},", last_seen_at__gte=since).exists()


def webhook_oldest_pending_age_s() -> float | None:
    """Seconds the oldest pending webhook delivery has waited since it was created; None if none."""
    oldest = WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING).aggregate(at=Min("created_at"))["at"]
    return None if oldest is None else max((timezone.now() - oldest).total_seconds(), 0.0)
