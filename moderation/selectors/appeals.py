"""Appeal selectors: a post's appeals, the open ones a reviewer may decide, and their statistics."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median

from django.db.models import QuerySet

from moderation.models import Appeal, Post


def appeals_of_post(*, post: Post) -> QuerySet[Appeal]:
    return Appeal.objects.filter(post=post).order_by("-created_at", "-pk")


def appeals_open() -> QuerySet[Appeal]:
    """Undecided appeals, oldest first (the order of the admin's queue)."""
    return Appeal.objects.filter(decided_at__isnull=True).select_related("post").order_by("created_at", "pk")


@dataclass(frozen=True)
class OverturnRate:
    """Of the appeals decided in a group (a category, or a source), how many were overturned."""

    group: str
    decided: int
    overturned: int

    @property
    def rate(self) -> float:
        return self.overturned / self.decided if self.decided else 0.0


@dataclass(frozen=True)
class AppealStats:
    opened: int  # appeals opened since the start of the window
    open_now: int  # undecided appeals, whenever opened
    decided: int  # appeals decided since the start of the window
    by_category: list[OverturnRate]  # appeals judged (upheld or overturned), moot ones left out
    by_source: list[OverturnRate]  # "engine" (automated removal) and "reviewer"
    median_decision_s: float | None  # opening to decision, of the appeals decided in the window


def stats_appeals(*, since: datetime) -> AppealStats:
    """Appeal volume, overturn rates per category and per source, and the median time to decision."""
    decided = Appeal.objects.filter(decided_at__gte=since)
    rows = list(decided.values_list("restriction_category", "restriction_automated", "decision", "created_at",
                                    "decided_at"))
    by_category: dict[str, list[int]] = {}
    by_source: dict[str, list[int]] = {}
    for category, automated, decision, _, _ in rows:
        if decision == Appeal.Decision.MOOT:
            continue  # closed without a judgment: no part of an overturn rate
        for table, key in ((by_category, category or "—"), (by_source, "engine" if automated else "reviewer")):
            counts = table.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += decision == Appeal.Decision.OVERTURN
    durations = [(decided_at - created_at).total_seconds() for _, _, _, created_at, decided_at in rows]
    return AppealStats(
        opened=Appeal.objects.filter(created_at__gte=since).count(),
        open_now=Appeal.objects.filter(decided_at__isnull=True).count(),
        decided=len(rows),
        by_category=[OverturnRate(k, *v) for k, v in sorted(by_category.items())],
        by_source=[OverturnRate(k, *v) for k, v in sorted(by_source.items())],
        median_decision_s=float(median(durations)) if durations else None)
