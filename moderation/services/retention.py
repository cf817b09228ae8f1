"""Retention: drop the content of old posts, keep what verdicts and retraining need."""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import Post, PostEvent

PURGE_BATCH = 500


def post_content_purge(*, days: int | None = None, mode: str | None = None) -> int:
    """Delete images and text of posts older than ``days``; returns how many posts were purged.

    Verdicts (analyses), decisions, events and embeddings stay. ``anonymize`` also drops the
    client's ``external_id`` and ``metadata``, which may identify the author.
    """
    days = moderation_settings.RETENTION_DAYS if days is None else days
    mode = mode or moderation_settings.RETENTION_MODE
    if days is None:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    purged = 0
    while batch := list(Post.objects.filter(created_at__lt=cutoff, content_deleted_at__isnull=True)
                        .order_by("created_at")[:PURGE_BATCH]):
        _purge(batch, anonymize=mode == "anonymize")
        purged += len(batch)
    return purged


def _purge(posts: list[Post], *, anonymize: bool) -> None:
    now = timezone.now()
    for post in posts:
        if post.image:
            post.image.delete(save=False)  # the file goes; the row keeps its hash and size
        if post.image_thumbnail:
            post.image_thumbnail.delete(save=False)
        post.text, post.content_deleted_at = "", now
        if anonymize:
            post.external_id, post.metadata = None, {}
    fields = ["image", "image_thumbnail", "text", "content_deleted_at", "updated_at"] + (["external_id", "metadata"] if anonymize else [])
    with transaction.atomic():
        Post.objects.bulk_update(posts, fields)
        PostEvent.objects.bulk_create(
            PostEvent(post=p, from_state=p.state, to_state=p.state, actor="retention",
                      detail={"content_deleted": True, "anonymized": anonymize}) for p in posts)
