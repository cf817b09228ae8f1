"""Near-duplicate clusters for reviewers: a post's cluster and who in it a decision would reach,
and the review queue with each cluster folded into one row."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import numpy as np
from django.utils import timezone
from numpy.typing import NDArray

from moderation.conf import moderation_settings
from moderation.models import Post, PostState, ReviewDecision
from moderation.selectors.banks import NearDuplicate, post_near_duplicates
from moderation.selectors.reviews import QUEUE_PAGE_SIZE, QueueRow, queue_top_score, review_outcomes, review_queue
from vlm_engine.pdq_index import hamming_distances, hashes_from_hex

# The queue is folded over its first QUEUE_FOLD_SCAN posts in priority order (one query of four
# columns); copies further down join their cluster's row once they rise that far.
QUEUE_FOLD_SCAN = 10_000
# Members of a folded row shown by id under it (the row's count covers them all).
FOLDED_SHOWN = 8
# The most near-duplicates one cluster decision reaches (and its confirmation page lists), and
# how many of them the post page shows.
CLUSTER_MAX = 500
CLUSTER_SHOWN = 50


def queue_fold(*, rows: Sequence[tuple[Any, Any, str, int | None]], threshold: int, min_quality: int,
               limit: int) -> list[list[Any]]:
    """Group queue rows ``(id, client id, PDQ hash, quality)``, given in queue order, into clusters.

    Leader clustering: the first row not yet in a cluster leads a new one, which takes every later
    row of the same client, not yet in a cluster, whose hash is within ``threshold`` bits of the
    leader's. So a cluster's representative is its highest-priority post, every member is a
    near-duplicate of it (no chains of copies of copies), and the result depends on nothing but
    the order. Rows without a hash, or below ``min_quality``, stand alone. Only leaders are looked
    up, each with one vectorised scan of its client's hashes: at most ``limit`` scans of at most
    ``len(rows)`` hashes (``bench/clusters.py``: at queue sizes up to 10,000 this beats a
    multi-index per client, whose per-query overhead is fixed). Returns at most ``limit`` clusters,
    each a list of ids in queue order, leader first.
    """
    by_client: dict[Any, list[int]] = {}
    for i, (_, client_id, pdq, quality) in enumerate(rows):
        if pdq and (quality or 0) >= min_quality:
            by_client.setdefault(client_id, []).append(i)
    scans: dict[Any, tuple[NDArray[np.int64], NDArray[np.uint8]]] = {}
    taken = np.zeros(len(rows), dtype=bool)
    clusters: list[list[Any]] = []
    for i, (pk, client_id, pdq, quality) in enumerate(rows):
        if len(clusters) == limit:
            break
        if taken[i]:
            continue
        taken[i] = True
        members = [i]
        if pdq and (quality or 0) >= min_quality:
            if client_id not in scans:
                positions = by_client[client_id]
                scans[client_id] = (np.asarray(positions, dtype=np.int64),
                                    hashes_from_hex([rows[p][2] for p in positions]))
            positions, hashes = scans[client_id]
            near = positions[(hamming_distances(hashes, hashes_from_hex([pdq])[0]) <= threshold) & ~taken[positions]]
            taken[near] = True
            members += near.tolist()
        clusters.append([rows[m][0] for m in members])
    return clusters


def review_queue_clusters(*, now: datetime | None = None, limit: int = QUEUE_PAGE_SIZE) -> list[list[Any]]:
    """The queue's first ``limit`` clusters (see ``queue_fold``), as lists of post ids, leader first."""
    rows = list(review_queue(now=now).values_list("pk", "client_id", "pdq_hash", "pdq_quality")[:QUEUE_FOLD_SCAN])
    return queue_fold(rows=rows, threshold=moderation_settings.REVIEW_CLUSTER_DISTANCE,
                      min_quality=moderation_settings.BANK_MIN_QUALITY, limit=limit)


def review_queue_page(*, now: datetime | None = None, limit: int = QUEUE_PAGE_SIZE) -> list[QueueRow]:
    """The queue's first ``limit`` rows: each cluster's leader, with its size and first members."""
    now = now or timezone.now()
    clusters = review_queue_clusters(now=now, limit=limit)
    shown = [pk for cluster in clusters for pk in cluster[:1 + FOLDED_SHOWN]]
    posts = review_queue(now=now).select_related("current_analysis", "review_claimed_by").in_bulk(shown)
    return [QueueRow(post=posts[cluster[0]], score=queue_top_score(posts[cluster[0]]), cluster_size=len(cluster),
                     folded=tuple(posts[pk] for pk in cluster[1:1 + FOLDED_SHOWN]))
            for cluster in clusters]


def review_neighbours(*, post: Post, now: datetime | None = None) -> tuple[Any, Any]:
    """The rows before and after ``post`` on the queue's first page (for j/k), or None; folded
    copies are skipped over, as the queue shows them."""
    ids = [cluster[0] for cluster in review_queue_clusters(now=now)]
    if post.pk not in ids:
        return None, ids[0] if ids else None
    at = ids.index(post.pk)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


@dataclass(frozen=True)
class ClusterMember:
    """A post of a cluster, where it stands, and why a cluster decision would leave it alone ("" if it would not)."""

    post: Post
    distance: int  # PDQ bits from the cluster's post; 0 for the post itself
    similarity: float | None  # cosine of the image embeddings (see NearDuplicate); None for the post itself
    decision: str  # the engine's decision, "" before any analysis
    outcome: ReviewDecision | None  # the standing reviewer decision
    skip: str


def review_cluster(*, post: Post, reviewer: Any, now: datetime | None = None,
                   limit: int = CLUSTER_MAX) -> list[ClusterMember]:
    """The post and its near-duplicates (the client's own only, nearest first), each with whether one
    decision on the cluster would reach it.

    Left alone, with the reason: posts not waiting for review (already reviewed, or decided by the
    engine), posts another reviewer holds, and copies whose escalation stands (an escalation asks
    for a look of its own, which a decision on another post is not).
    """
    now = now or timezone.now()
    near = post_near_duplicates(post=post, limit=limit)
    itself = NearDuplicate(post=post, distance=0, similarity=None,
                           decision=post.current_analysis.decision if post.current_analysis else "")
    everyone = [itself, *near]
    outcomes = review_outcomes(post_ids=[n.post.pk for n in everyone])
    return [ClusterMember(post=n.post, distance=n.distance, similarity=n.similarity, decision=n.decision,
                          outcome=outcomes.get(n.post.pk),
                          skip=_skip_reason(n.post, outcome=outcomes.get(n.post.pk), reviewer=reviewer, now=now,
                                            itself=n is itself))
            for n in everyone]


def _skip_reason(member: Post, *, outcome: ReviewDecision | None, reviewer: Any, now: datetime, itself: bool) -> str:
    if member.state == PostState.REVIEWED:
        by = f" by {outcome.reviewer_username}" if outcome else ""
        return f"already decided: {outcome.get_verdict_display() if outcome else 'reviewed'}{by}"
    if member.state != PostState.NEEDS_REVIEW:
        return f"not waiting for review ({member.state})"
    held = member.review_claimed_until and member.review_claimed_until >= now
    if held and member.review_claimed_by_id not in (None, reviewer.pk):
        return f"held by {member.review_claimed_by.get_username() if member.review_claimed_by else 'another reviewer'}"
    if not itself and outcome is not None and outcome.verdict == ReviewDecision.Verdict.ESCALATE:
        return f"escalated by {outcome.reviewer_username}: decide it on its own page"
    return ""
