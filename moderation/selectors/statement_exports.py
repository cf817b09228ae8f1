"""Statement export selectors: the recorded statements of a period."""
from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from moderation.models import StatementExport


def statement_exports_period(*, since: datetime, until: datetime | None = None) -> Q:
    """Statements whose decision was taken at or after ``since`` and before ``until`` (open-ended)."""
    period = Q(restricted_at__gte=since)
    return period & Q(restricted_at__lt=until) if until is not None else period


def statement_exports_between(*, since: datetime, until: datetime | None = None) -> QuerySet[StatementExport]:
    """The recorded statements of a period in decision order: the order every export writes them in."""
    return (StatementExport.objects.filter(statement_exports_period(since=since, until=until))
            .order_by("restricted_at", "id"))

