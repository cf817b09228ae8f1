"""Stats selectors for leads: volume, decision mix, queue age, model–reviewer agreement, throughput."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from moderation.models import Post, PostState, ReviewDecision

Verdict = ReviewDecision.Verdict
# Queue age buckets: (label, lower bound in hours).
AGE_BUCKETS = (("< 1 h", 0), ("1–6 h", 1), ("6–24 h", 6), ("1–3 d", 24), ("> 3 d", 72))


@dataclass(frozen=True)
class Agreement:
    category: str
    agreed: int
    total: int

    @property
    def rate(self) -> float:
        return self.agreed / self.total if self.total else 0.0


def decisions_standing(*, since: datetime) -> QuerySet[ReviewDecision]:
    """Decisions that still count: not undo rows, and not withdrawn by one."""
    return (ReviewDecision.objects.filter(created_at__gte=since, undone_by__isnull=True)
            .exclude(verdict=Verdict.UNDO))


def stats_volume_per_day(*, days: int = 14, now: datetime | None = None) -> list[tuple[date, int]]:
    today = timezone.localdate(now or timezone.now())
    start = today - timedelta(days=days - 1)
    counts = dict(Post.objects.filter(created_at__date__gte=start).annotate(day=TruncDate("created_at"))
                  .values("day").annotate(n=Count("pk")).values_list("day", "n"))
    return [(start + timedelta(days=i), counts.get(start + timedelta(days=i), 0)) for i in range(days)]


def stats_decision_mix(*, since: datetime) -> list[tuple[str, int]]:
    counts = dict(decisions_standing(since=since).values("verdict").annotate(n=Count("pk"))
                  .values_list("verdict", "n"))
    return [(v.label, counts.get(v.value, 0)) for v in Verdict if v != Verdict.UNDO]


def stats_queue_ages(*, now: datetime | None = None) -> list[tuple[str, int]]:
    now = now or timezone.now()
    bounds = [h for _, h in AGE_BUCKETS] + [None]
    aggregates = {}
    for i, ((_, low), high) in enumerate(zip(AGE_BUCKETS, bounds[1:])):
        window = Q(created_at__lte=now - timedelta(hours=low))
        if high is not None:
            window &= Q(created_at__gt=now - timedelta(hours=high))
        aggregates[f"bucket{i}"] = Count("pk", filter=window)
    counts = Post.objects.filter(state=PostState.NEEDS_REVIEW).aggregate(**aggregates)
    return [(label, counts[f"bucket{i}"]) for i, (label, _) in enumerate(AGE_BUCKETS)]


def stats_agreement(*, since: datetime) -> list[Agreement]:
    """Per category the model put on top: the share of reviews confirming it (violating, same category)."""
    rows = (decisions_standing(since=since).filter(verdict__in=[Verdict.VIOLATING, Verdict.NOT_VIOLATING])
            .exclude(analysis__top_category="").values("analysis__top_category", "verdict", "category")
            .annotate(n=Count("pk")))
    agreed: dict[str, int] = {}
    total: dict[str, int] = {}
    for row in rows:
        top = row["analysis__top_category"]
        total[top] = total.get(top, 0) + row["n"]
        confirms = row["verdict"] == Verdict.VIOLATING and row["category"] == top
        agreed[top] = agreed.get(top, 0) + (row["n"] if confirms else 0)
    return [Agreement(category=c, agreed=agreed.get(c, 0), total=total[c]) for c in sorted(total)]


def stats_throughput(*, since: datetime, limit: int = 20) -> list[tuple[str, int]]:
    return list(decisions_standing(since=since).values("reviewer_username").annotate(n=Count("pk"))
                .order_by("-n", "reviewer_username").values_list("reviewer_username", "n")[:limit])
