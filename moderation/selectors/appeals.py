"""Appeal selectors: a post's appeals, and the open ones a reviewer may decide."""
from __future__ import annotations

from django.db.models import QuerySet

from moderation.models import Appeal, Post


def appeals_of_post(*, post: Post) -> QuerySet[Appeal]:
    return Appeal.objects.filter(post=post).order_by("-created_at", "-pk")


def appeals_open() -> QuerySet[Appeal]:
    """Undecided appeals, oldest first (the order of the admin's queue)."""
    return Appeal.objects.filter(decided_at__isnull=True).select_related("post").order_by("created_at", "pk")
