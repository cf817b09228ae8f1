"""Statements of reasons for the DSA Transparency Database: one stored record per restricting decision,
written in the batches of the database's endpoint for many statements.

A record is made the first time an export or the submitter meets a decision, with the statement
as built then and the decision's PUID. The PUID names the post and the ledger row of the decision
(``<post>-analysis-<id>``, ``<post>-review-<id>``): the same on every re-export, and new for every
new decision, so a post restricted again after an overturn gets a new one. The unique column
makes that a guarantee: a PUID is never stored twice, and records are never deleted.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, TypeVar

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import Analysis, Decision, Post, ReviewDecision, StatementExport
from moderation.services.statements import Restriction, restriction_by_engine, restriction_by_review, statement_build

# POST /api/v1/statements takes 1 to 100 statements: "'statements' => 'required|array|between:1,100'" in
# app/Http/Controllers/Api/v1/StatementMultipleAPIController.php of
# github.com/digital-services-act/transparency-database (the database's own code).
BATCH_LIMIT = 100
RECORD_CHUNK = 500
T = TypeVar("T")


def statement_exports_record(*, since: datetime | None = None, until: datetime | None = None,
                             now: datetime | None = None) -> int:
    """Record every final restricting decision taken in [since, until) that has no record yet;
    returns how many were recorded.

    Final: the engine's removals at once; a reviewer's ``violating`` decision once the reviewer
    can no longer undo it (``REVIEW_UNDO_SECONDS``), and only if it was not undone.
    """
    final_before = (now or timezone.now()) - timedelta(seconds=moderation_settings.REVIEW_UNDO_SECONDS)
    removals = _between(Analysis.objects.filter(decision=Decision.REMOVE, statement_export__isnull=True),
                        since=since, until=until)
    reviews = _between(ReviewDecision.objects.filter(verdict=ReviewDecision.Verdict.VIOLATING,
                                                     undone_by__isnull=True, statement_export__isnull=True),
                       since=since, until=min(until, final_before) if until is not None else final_before)
    return sum(_records_create(chunk) for chunk in _in_chunks(_restrictions(removals=removals, reviews=reviews),
                                                               size=RECORD_CHUNK))


def _between(qs: QuerySet[Any], *, since: datetime | None, until: datetime | None) -> QuerySet[Any]:
    qs = qs.filter(created_at__gte=since) if since is not None else qs
    return qs.filter(created_at__lt=until) if until is not None else qs


def _restrictions(*, removals: QuerySet[Analysis],
                  reviews: QuerySet[ReviewDecision]) -> Iterator[tuple[Post, Restriction]]:
    for analysis in removals.select_related("policy", "post").order_by("created_at", "id").iterator(RECORD_CHUNK):
        yield analysis.post, restriction_by_engine(analysis=analysis)
    reviews = reviews.select_related("post__current_analysis__policy", "analysis__policy")
    for decision in reviews.order_by("created_at", "id").iterator(RECORD_CHUNK):
        analysis = decision.analysis or decision.post.current_analysis
        if analysis is not None:  # a decision is taken on an analysed post; this guards the ledger's oldest rows
            yield decision.post, restriction_by_review(decision=decision, analysis=analysis)


def _in_chunks(items: Iterable[T], *, size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _records_create(restrictions: list[tuple[Post, Restriction]]) -> int:
    records = [StatementExport(
        puid=r.puid, post=post, restricted_at=r.applied_at, analysis=r.analysis if r.decision is None else None,
        review_decision=r.decision, statement=statement_build(post=post, restriction=r)) for post, r in restrictions]
    puids = [record.puid for record in records]
    with transaction.atomic():
        # Another export or the submitter may record the same decisions meanwhile: theirs stands.
        before = StatementExport.objects.filter(puid__in=puids).count()
        StatementExport.objects.bulk_create(records, ignore_conflicts=True)
        return int(StatementExport.objects.filter(puid__in=puids).count() - before)


def statement_batches(exports: Iterable[StatementExport]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Request bodies of the database's ``POST /api/v1/statements``: ``{"statements": [...]}``, at most
    ``BATCH_LIMIT`` statements each, in the order given."""
    for chunk in _in_chunks((export.statement for export in exports), size=BATCH_LIMIT):
        yield {"statements": chunk}
