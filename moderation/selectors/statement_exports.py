"""Statement export selectors: the recorded statements of a period, and how far the submitter got."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Q, QuerySet

from moderation.models import StatementExport


def statement_exports_period(*, since: datetime, until: datetime | None = None) -> Q:
    """Statements whose decision was taken at or after ``since`` and before ``until`` (open-ended)."""
    period = Q(restricted_at__gte=since)
    return period & Q(restricted_at__lt=until) if until is not None else period


def statement_exports_between(*, since: datetime, until: datetime | None = None) -> QuerySet[StatementExport]:
    """The recorded statements of a period in decision order: the order every export writes them in."""
    return (StatementExport.objects.filter(statement_exports_period(since=since, until=until))
            .order_by("restricted_at", "id"))



@dataclass(frozen=True)
class StatementBacklog:
    """Recorded statements per submission state, and the decision time of the oldest not yet accepted."""

    counts: dict[str, int]
    oldest_pending_at: datetime | None


def statement_exports_backlog() -> StatementBacklog:
    rows = StatementExport.objects.values("state").annotate(n=Count("id")).values_list("state", "n")
    counts = {state: 0 for state in StatementExport.State.values} | dict(rows)
    oldest = StatementExport.objects.filter(state=StatementExport.State.PENDING).aggregate(
        at=Min("restricted_at"))["at"]
    return StatementBacklog(counts=counts, oldest_pending_at=oldest)
