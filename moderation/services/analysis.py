"""Analysis services: claim queued posts, record verdicts, handle failures and stale claims."""
from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np
from django.db import router, transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.dispatch import analysis_wakeup
from moderation.models import Analysis, Decision, ModelVersion, Policy, Post, PostState
from moderation.services.explanations import explanation_build
from moderation.services.lifecycle import SWEEPER, Actor, Move, post_transition
from moderation.services.locking import rows_lock_skipping_locked
from moderation.services.model_output import (LABEL_LIMIT, ModelOutputInvalid, model_embedding_clean,
                                              model_scores_clean, model_text_clean)
from moderation.services.policies import policy_for_engine
from moderation.services.search_pgvector import search_index_record
from vlm_engine.types import Analysis as EngineAnalysis
from vlm_engine.types import Policy as EnginePolicy
from vlm_engine.types import PostInput


class Precedents(Protocol):
    """What names a post's nearest labelled examples (``services.learning.Precedents``)."""

    def nearest_examples(self, *, post_id: str, client_id: Any, image: np.ndarray | None,
                         text: np.ndarray | None) -> list[dict[str, Any]]: ...


STATE_BY_DECISION = {Decision.ALLOW: PostState.ALLOWED, Decision.REVIEW: PostState.NEEDS_REVIEW,
                     Decision.REMOVE: PostState.REMOVED}


@dataclass(frozen=True)
class Verdict:
    decision: str
    top_category: str
    risk: float


def _moves(post_ids: Iterable[Any], *, from_state: str, to_state: str, detail: dict | None = None) -> list[Move]:
    return [Move(post_id=pk, from_state=from_state, to_state=to_state, detail=detail or {}) for pk in post_ids]


@transaction.atomic
def post_claim_batch(*, limit: int, worker: str, charge: bool = True) -> tuple[uuid.UUID, list[Post]]:
    """Move up to ``limit`` queued posts, oldest first, to ``analyzing`` under a new claim token.

    A post retried after a failed attempt is claimed alone: if it is what killed its worker,
    it fails by itself and the posts that shared its batch are not charged again. A claim
    made ahead of the work (``charge=False``) counts no attempt until ``post_claim_start``:
    if the worker dies or stops before starting it, the posts cannot have been the cause.
    """
    token = uuid.uuid4()
    queued = Post.objects.filter(state=PostState.QUEUED)
    ids = (_ids_locked(queued.filter(attempts__gt=0), limit=1)
           or _ids_locked(queued, limit=limit))
    if not ids:
        return token, []
    # The rows are locked (SKIP LOCKED), and the UPDATE is conditional on the state besides.
    post_transition(moves=_moves(ids, from_state=PostState.QUEUED, to_state=PostState.ANALYZING),
                    actor=Actor.worker(worker),
                    updates={"claim_token": token, "claimed_at": timezone.now(), "claimed_by": worker,
                             "attempts": F("attempts") + int(charge)})
    return token, list(Post.objects.filter(claim_token=token, state=PostState.ANALYZING).order_by("created_at"))


def _ids_locked(qs: QuerySet[Post], *, limit: int) -> list[uuid.UUID]:
    return list(rows_lock_skipping_locked(qs.order_by("created_at")).values_list("id", flat=True)[:limit])


def post_engine_inputs(*, posts: Sequence[Post]) -> list[PostInput]:
    """What the engine needs of each post: its key, image bytes and text."""
    return [PostInput(key=str(p.pk), image=_image_bytes(p), text=p.text) for p in posts]


def _image_bytes(post: Post) -> bytes | None:
    if not post.image:
        return None
    with post.image.open("rb") as handle:
        return handle.read()


def analysis_decide(*, scores: dict[str, float], policy: EnginePolicy, post_id: uuid.UUID) -> Verdict:
    """Remove / review / allow from per-category thresholds; allowed posts are sampled for QC."""
    decision = Decision.ALLOW
    for category in policy.categories:
        score = scores.get(category.slug, 0.0)
        if score >= category.remove_threshold:
            decision = Decision.REMOVE
        elif score >= category.review_threshold and decision == Decision.ALLOW:
            decision = Decision.REVIEW
    if decision == Decision.ALLOW and _sampled_for_review(post_id):
        decision = Decision.REVIEW
    weighted = {c.slug: c.severity * scores.get(c.slug, 0.0) for c in policy.categories}
    top = max(weighted, key=weighted.__getitem__, default="")
    return Verdict(decision=decision, top_category=top, risk=round(weighted.get(top, 0.0), 6))


def _sampled_for_review(post_id: uuid.UUID) -> bool:
    # A hash of the id, not random(): the same post is always sampled the same way.
    rate = moderation_settings.REVIEW_SAMPLE_RATE
    bucket = int.from_bytes(hashlib.sha256(post_id.bytes).digest()[:4], "big") / 2**32
    return bucket < rate


def _array(values: Sequence[float] | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)


def analysis_record_batch(*, token: uuid.UUID, policy: Policy, results: Sequence[EngineAnalysis],
                          worker: str, classifier: ModelVersion | None = None,
                          scoring: str = "zero_shot", precedents: Precedents | None = None) -> list[Analysis]:
    """Store the verdicts of one claim; posts no longer held by this claim are skipped.

    Model output is untrusted: when storing the batch raises anything (a value the database
    refuses, a NaN score, a bug met by one post's data), the batch is rolled back and each
    result is stored alone, so only the post that causes it fails its attempt (with the real
    error, retried alone later) and the rest conclude now, charged nothing more. ``precedents``
    name each post's nearest labelled examples (its own client's only).
    """
    try:
        return _analyses_store(token=token, policy=policy, results=results, worker=worker,
                               classifier=classifier, scoring=scoring, precedents=precedents)
    # Any exception: the point is that no output of one post can abandon a whole claim.
    except Exception as exc:  # noqa: BLE001
        if len(results) == 1:
            post_attempt_fail(token=token, post_id=results[0].key, error=_record_error(exc), worker=worker)
            return []
    stored: list[Analysis] = []
    for result in results:
        stored += analysis_record_batch(token=token, policy=policy, results=[result], worker=worker,
                                        classifier=classifier, scoring=scoring, precedents=precedents)
    return stored


def _record_error(exc: Exception) -> str:
    if isinstance(exc, ModelOutputInvalid):
        return f"model output invalid: {exc}"
    return model_text_clean(f"recording the analysis failed: {type(exc).__name__}: {exc}") or ""


@transaction.atomic
def _analyses_store(*, token: uuid.UUID, policy: Policy, results: Sequence[EngineAnalysis], worker: str,
                    classifier: ModelVersion | None, scoring: str,
                    precedents: Precedents | None) -> list[Analysis]:
    held = {str(p.pk): p for p in Post.objects.select_for_update()
            .filter(claim_token=token, state=PostState.ANALYZING)}
    engine_policy = policy_for_engine(policy=policy)
    analyses, posts = [], []
    for result in results:
        post = held.get(result.key)
        if post is None:
            continue
        analysis = _analysis_build(post=post, token=token, policy=policy, engine_policy=engine_policy,
                                   result=result, batch_posts=len(results))
        analysis.classifier, analysis.scoring = classifier, scoring
        if precedents is not None:
            analysis.explanation["nearest_examples"] = precedents.nearest_examples(
                post_id=str(post.pk), client_id=post.client_id, image=_array(result.image_embedding),
                text=_array(result.text_embedding), sentence=_array(result.sentence_embedding))
        analyses.append(analysis)
        posts.append(post)
    return _analyses_conclude(posts=posts, analyses=analyses, token=token, policy=policy, worker=worker)


@transaction.atomic
def analysis_record_known(*, token: uuid.UUID, policy: Policy, analyses: Sequence[Analysis],
                          worker: str) -> list[Analysis]:
    """Store verdicts reached without the models (a hash-bank match) along the same conclude path
    as the engine's; posts no longer held by this claim are skipped."""
    held = {p.pk: p for p in Post.objects.select_for_update().filter(
        claim_token=token, state=PostState.ANALYZING, pk__in=[a.post_id for a in analyses])}
    kept = [a for a in analyses if a.post_id in held]
    return _analyses_conclude(posts=[held[a.post_id] for a in kept], analyses=kept, token=token, policy=policy,
                              worker=worker)


def _analyses_conclude(*, posts: list[Post], analyses: list[Analysis], token: uuid.UUID, policy: Policy,
                       worker: str) -> list[Analysis]:
    Analysis.objects.bulk_create(analyses)
    _posts_conclude(posts=posts, analyses=analyses, token=token, worker=worker, policy_version=policy.version)
    search_index_record(analyses=analyses, client_ids=[p.client_id for p in posts], using=router.db_for_write(Post))
    return analyses


def _posts_conclude(*, posts: Sequence[Post], analyses: Sequence[Analysis], token: uuid.UUID, worker: str,
                    policy_version: int) -> None:
    """Point each post at its new analysis and move it to the decided state.

    One UPDATE per resulting state (three at most) that reads the analysis id and risk (severity ×
    confidence; the queue adds age when it reads) from the rows just inserted for this claim;
    ``bulk_update`` would build a CASE per post and field, which costs more CPU than the rest of
    the batch's bookkeeping together.
    """
    moves = [Move(post_id=p.pk, from_state=PostState.ANALYZING, to_state=STATE_BY_DECISION[Decision(a.decision)],
                  detail={"decision": a.decision, "policy_version": policy_version})
             for p, a in zip(posts, analyses)]
    this_claim = Analysis.objects.filter(post_id=OuterRef("pk"), claim_token=token)
    post_transition(moves=moves, actor=Actor.worker(worker), where=Q(claim_token=token),
                    updates={"current_analysis_id": Subquery(this_claim.values("id")[:1]),
                             "review_priority": Subquery(this_claim.values("risk")[:1]),
                             "claim_token": None, "last_error": ""})


def _analysis_build(*, post: Post, token: uuid.UUID, policy: Policy, engine_policy: EnginePolicy,
                    result: EngineAnalysis, batch_posts: int) -> Analysis:
    scores = model_scores_clean(result.scores)
    verdict = analysis_decide(scores=scores, policy=engine_policy, post_id=post.pk)
    size = (post.image_width, post.image_height) if post.image_width and post.image_height else None
    return Analysis(
        post=post, claim_token=token, policy=policy,
        model_version=model_text_clean(result.model_version, limit=LABEL_LIMIT) or "", scores=scores,
        decision=verdict.decision, top_category=verdict.top_category, risk=verdict.risk,
        explanation=explanation_build(scores=scores, policy=engine_policy, verdict_decision=verdict.decision,
                                      result=result, image_size=size),
        timings_ms=_timings(result.timings_ms, batch_posts=batch_posts),
        image_embedding=model_embedding_clean(result.image_embedding, role="image"),
        text_embedding=model_embedding_clean(result.text_embedding, role="text"),
        sentence_embedding=model_embedding_clean(result.sentence_embedding, role="sentence"),
    )


def _timings(timings: Mapping[str, float], *, batch_posts: int) -> dict[str, float]:
    """Milliseconds per stage for the whole batch the post was analysed in (the models run once
    per batch, so a per-post share would be made up); ``batch_posts`` says how many shared it."""
    stages = {str(k): round(float(v), 3) for k, v in timings.items()}
    if not all(math.isfinite(v) for v in stages.values()):
        raise ModelOutputInvalid(f"the engine reported non-finite timings: {stages}")
    return {"batch_posts": batch_posts, **stages}


@transaction.atomic
def post_attempt_fail(*, token: uuid.UUID, post_id: uuid.UUID, error: str, worker: str,
                      permanent: bool = False) -> str | None:
    """Record a failed attempt: back to ``queued``, or ``failed`` once attempts run out."""
    post = Post.objects.select_for_update().filter(
        pk=post_id, claim_token=token, state=PostState.ANALYZING).first()
    if post is None:
        return None
    exhausted = permanent or post.attempts >= moderation_settings.MAX_ATTEMPTS
    new_state = PostState.FAILED if exhausted else PostState.QUEUED
    error = model_text_clean(error) or "unknown error"
    post_transition(moves=_moves([post.pk], from_state=PostState.ANALYZING, to_state=new_state,
                                 detail={"error": error[:500], "attempt": post.attempts}),
                    actor=Actor.worker(worker), where=Q(claim_token=token),
                    updates={"claim_token": None, "last_error": error})
    return new_state


@transaction.atomic
def post_release_claims(*, posts: QuerySet[Post], actor: Actor, reason: str) -> int:
    """Give abandoned claims back to the queue, or fail posts whose attempts ran out."""
    held = list(rows_lock_skipping_locked(posts.filter(state=PostState.ANALYZING)))
    limit = moderation_settings.MAX_ATTEMPTS
    retry = [p.pk for p in held if p.attempts < limit]
    failed = [p.pk for p in held if p.attempts >= limit]
    detail = {"reason": reason}
    post_transition(moves=_moves(retry, from_state=PostState.ANALYZING, to_state=PostState.QUEUED, detail=detail),
                    actor=actor, updates={"claim_token": None})
    post_transition(moves=_moves(failed, from_state=PostState.ANALYZING, to_state=PostState.FAILED, detail=detail),
                    actor=actor, updates={"claim_token": None, "last_error": f"{reason} after {limit} attempts"})
    return len(held)


def post_claim_start(*, token: uuid.UUID, posts: Sequence[Post]) -> None:
    """Count the attempt of a claim made ahead (``charge=False``), now that its work starts."""
    Post.objects.filter(claim_token=token, state=PostState.ANALYZING).update(
        attempts=F("attempts") + 1, claimed_at=timezone.now())
    for post in posts:
        post.attempts += 1


@transaction.atomic
def post_claim_return(*, token: uuid.UUID, worker: str) -> int:
    """Give back a claim made ahead and never started (the batch before it failed, or the worker
    is shutting down): back to ``queued``, no attempt counted."""
    held = list(rows_lock_skipping_locked(Post.objects.filter(claim_token=token, state=PostState.ANALYZING)))
    return post_transition(moves=_moves([p.pk for p in held], from_state=PostState.ANALYZING,
                                        to_state=PostState.QUEUED, detail={"reason": "returned unprocessed"}),
                           actor=Actor.worker(worker), updates={"claim_token": None})


def post_release_worker_claims(*, worker: str) -> int:
    """On worker start: claims still held under this worker's name belong to a dead process."""
    return post_release_claims(posts=Post.objects.filter(claimed_by=worker), actor=Actor.worker(worker),
                               reason="worker restarted")


def post_queue_wakeup() -> bool:
    """Wake the workers if anything is queued (after a restart, when no message may be left)."""
    pending = Post.objects.filter(state=PostState.QUEUED).exists()
    if pending:
        analysis_wakeup()
    return pending


def post_sweep() -> dict[str, int]:
    """Release expired claims and re-wake the workers for posts left queued too long."""
    now = timezone.now()
    expired = Post.objects.filter(claimed_at__lt=now - timedelta(seconds=moderation_settings.CLAIM_TIMEOUT))
    released = post_release_claims(posts=expired, actor=SWEEPER, reason="claim expired")
    stale = Post.objects.filter(
        state=PostState.QUEUED,
        created_at__lt=now - timedelta(seconds=moderation_settings.QUEUED_STALE_AFTER)).exists()
    if stale:
        analysis_wakeup()
    return {"released": released, "stale_queued": int(stale)}
