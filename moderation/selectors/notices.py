"""Notice selectors: a post's notices and their counts by reporter type."""
from __future__ import annotations

from django.db.models import Count, QuerySet

from moderation.models import Notice, Post


def notices_of_post(*, post: Post) -> QuerySet[Notice]:
    return Notice.objects.filter(post=post).order_by("-created_at", "-pk")


def notice_counts(*, post: Post) -> dict[str, int]:
    """``total``, ``open`` (not yet answered) and one count per reporter type, zeros included."""
    rows = dict(Notice.objects.filter(post=post).values_list("reporter_type").annotate(n=Count("pk")))
    counts = {kind: rows.get(kind, 0) for kind in Notice.ReporterType.values}
    counts["total"] = sum(counts.values())
    counts["open"] = Notice.objects.filter(post=post, decided_at__isnull=True).count()
    return counts
