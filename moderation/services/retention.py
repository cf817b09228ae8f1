"""Retention: drop the content of old posts, and every text derived from it; keep what verdicts and
retraining need."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import Analysis, EngineRequest, IdempotencyRecord, Post, StatementExport, WebhookDelivery
from moderation.services.lifecycle import RETENTION, Move, post_transition
from moderation.services.search_pgvector import search_index_remove

PURGE_BATCH = 500
# Explanation fields written from the image or the text: what was read, described, answered or argued.
STATEMENT_TEXT_FIELDS = ("decision_facts", "incompatible_content_explanation", "illegal_content_explanation")
STATEMENT_TEXT_PURGED = "(deleted with the content)"
DERIVED_EXPLANATION_FIELDS: dict[str, Any] = {"answers": [], "caption": None, "ocr_text": None, "ocr_words": [], "rationale": None, "summary": ""}


def post_content_purge(*, days: int | None = None, mode: str | None = None) -> int:
    """Delete images and text of posts older than ``days``; returns how many posts were purged.

    Also gone: what the models read or wrote about the content (OCR text, caption, answers,
    rationale, summary), the parameters and results of ad-hoc requests about the posts, the
    stored ``Idempotency-Key`` responses that repeated the posts, and the posts' rows of the
    pgvector search index (purged posts are not searchable). Verdicts (scores), decisions,
    events and the analyses' embeddings (retraining reads them) stay. ``anonymize`` also drops the client's
    ``external_id`` and ``metadata``, which may identify the author, from the post and from
    its webhook payloads.
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
    cleared: dict[str, Any] = {"image": "", "image_thumbnail": "", "text": "", "content_deleted_at": now, "updated_at": now}
    if anonymize:
        cleared.update(external_id=None, metadata={})
    with transaction.atomic():
        # Locked, so each event names the state the post is really in.
        held = list(Post.objects.select_for_update().filter(pk__in=[p.pk for p in posts]).only("id", "state"))
        post_transition(moves=[Move(post_id=p.pk, from_state=p.state, to_state=p.state,
                                    detail={"content_deleted": True, "anonymized": anonymize}) for p in held],
                        actor=RETENTION, updates=cleared)
        _derived_content_purge(post_ids=[p.pk for p in held], anonymize=anonymize)
        search_index_remove(post_ids=[p.pk for p in held], using=router.db_for_write(Post))


def _derived_content_purge(*, post_ids: list[Any], anonymize: bool) -> None:
    analyses = list(Analysis.objects.filter(post_id__in=post_ids).only("id", "explanation"))
    for analysis in analyses:
        analysis.explanation = {**(analysis.explanation or {}), **DERIVED_EXPLANATION_FIELDS}
    Analysis.objects.bulk_update(analyses, ["explanation"])
    EngineRequest.objects.filter(post_id__in=post_ids).update(params={}, result=None)
    IdempotencyRecord.objects.filter(response_body__id__in=[str(pk) for pk in post_ids]).delete()
    deliveries = list(WebhookDelivery.objects.filter(post_id__in=post_ids).only("id", "payload"))
    for delivery in deliveries:
        delivery.payload = _payload_purged(delivery.payload, anonymize=anonymize)
    WebhookDelivery.objects.bulk_update(deliveries, ["payload"])
    exports = list(StatementExport.objects.filter(post_id__in=post_ids).only("id", "statement"))
    for export in exports:
        export.statement = _statement_purged(export.statement)
    StatementExport.objects.bulk_update(exports, ["statement"])


def _statement_purged(statement: dict[str, Any]) -> dict[str, Any]:
    # A statement of reasons quotes the summary and the reviewer's reason, which may quote the content.
    return {**statement, **{k: STATEMENT_TEXT_PURGED for k in STATEMENT_TEXT_FIELDS if k in statement}}


def _payload_purged(payload: dict[str, Any], *, anonymize: bool) -> dict[str, Any]:
    if payload.get("statement"):
        payload = {**payload, "statement": _statement_purged(payload["statement"])}
    if anonymize:
        payload = {**payload, "post": {**payload.get("post", {}), "external_id": None}}
    return payload
