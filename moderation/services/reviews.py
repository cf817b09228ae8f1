"""Review services: claim the next post of the queue, decide it, undo the last decision."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Collection, Iterable

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import Appeal, Post, PostState, ReviewDecision
from moderation.selectors.clusters import review_cluster
from moderation.selectors.reviews import review_category_slugs, review_outcome, review_queue
from moderation.services.appeals import appeal_close_moot
from moderation.services.banks import bank_review_decision_record, bank_review_decision_undo
from moderation.errors import ServiceError
from moderation.services.lifecycle import Actor, Move, post_transition
from moderation.services.locking import rows_lock_skipping_locked


Verdict = ReviewDecision.Verdict
DECIDING_VERDICTS = (Verdict.VIOLATING, Verdict.NOT_VIOLATING, Verdict.ESCALATE)


def _claim_free(now: datetime) -> Q:
    return Q(review_claimed_until__isnull=True) | Q(review_claimed_until__lt=now)


def review_claim_held(*, reviewer: Any, now: datetime | None = None) -> Post | None:
    """The post this reviewer holds an unexpired claim on, if any."""
    now = now or timezone.now()
    return Post.objects.filter(state=PostState.NEEDS_REVIEW, review_claimed_by=reviewer,
                               review_claimed_until__gte=now).first()


@transaction.atomic
def review_claim_next(*, reviewer: Any, now: datetime | None = None) -> Post | None:
    """Claim the highest-priority post in ``needs_review`` that nobody else holds.

    A reviewer who already holds a claim gets that post back (a reload never grabs a second one).
    Posts the reviewer escalated are left to others: an escalation rises to the top of the queue,
    and handing it straight back to the reviewer who passed it on would undo the point of it.
    """
    now = now or timezone.now()
    if held := review_claim_held(reviewer=reviewer, now=now):
        return held
    waiting = review_queue(now=now).filter(_claim_free(now)).exclude(pk__in=_escalated_by(reviewer))
    candidate = rows_lock_skipping_locked(waiting).only("pk").first()
    if candidate is None:
        return None
    # Conditional on the claim still being free: without SKIP LOCKED (SQLite) this is what stops a double claim.
    claimed = post_transition(
        moves=[Move(post_id=candidate.pk, from_state=PostState.NEEDS_REVIEW, to_state=PostState.NEEDS_REVIEW,
                    detail={"action": "claim"})],
        actor=Actor.reviewer(reviewer), where=_claim_free(now), missing_ok=True,
        updates={"review_claimed_by": reviewer,
                 "review_claimed_until": now + timedelta(minutes=moderation_settings.REVIEW_CLAIM_MINUTES)})
    return Post.objects.get(pk=candidate.pk) if claimed else None


def _escalated_by(reviewer: Any) -> Any:
    """Ids of posts whose escalation by ``reviewer`` still stands (not undone)."""
    return ReviewDecision.objects.filter(reviewer=reviewer, verdict=Verdict.ESCALATE,
                                         undone_by__isnull=True).values("post_id")


def review_decision_check(*, post: Post, verdict: str, category: str, reason: str) -> None:
    """``verdict_invalid``, ``decision_incomplete`` or ``category_invalid`` unless the decision can be recorded."""
    if verdict not in DECIDING_VERDICTS:
        raise ServiceError("verdict_invalid", f"verdict must be one of {', '.join(DECIDING_VERDICTS)}.")
    if verdict == Verdict.VIOLATING and not (category and reason.strip()):
        raise ServiceError("decision_incomplete", "A violating decision needs a category and a reason.")
    if verdict == Verdict.VIOLATING and category not in review_category_slugs(post=post):
        raise ServiceError("category_invalid", f"{category!r} is not a category of the post's policy.")


def _locked_for_decision(*, post: Post, reviewer: Any, now: datetime) -> Post:
    locked = Post.objects.select_for_update().get(pk=post.pk)
    if locked.state != PostState.NEEDS_REVIEW:
        raise ServiceError("post_not_in_review", f"The post is {locked.state}, not waiting for review.", status=409)
    held_by_other = (locked.review_claimed_by_id not in (None, reviewer.pk)
                     and locked.review_claimed_until and locked.review_claimed_until >= now)
    if held_by_other:
        raise ServiceError("post_claimed", "Another reviewer holds this post.", status=409)
    return locked


@transaction.atomic
def review_decide(*, post: Post, reviewer: Any, verdict: str, category: str = "",
                  reason: str = "") -> ReviewDecision:
    """Write one ledger row and release the claim; escalated posts stay in review with a higher priority."""
    now = timezone.now()
    locked = _locked_for_decision(post=post, reviewer=reviewer, now=now)
    category = category if verdict == Verdict.VIOLATING else ""
    review_decision_check(post=locked, verdict=verdict, category=category, reason=reason)
    decision = ReviewDecision.objects.create(
        post=locked, analysis=locked.current_analysis, reviewer=reviewer, reviewer_username=reviewer.get_username(),
        verdict=verdict, category=category, reason=reason.strip(), created_at=now)
    bank_review_decision_record(decision=decision)  # copies of this image get the same decision
    new_state = PostState.NEEDS_REVIEW if verdict == Verdict.ESCALATE else PostState.REVIEWED
    boost = moderation_settings.REVIEW_ESCALATE_BOOST if verdict == Verdict.ESCALATE else 0.0
    # A move to reviewed tells the client: every final word, a replacement after an undo included.
    post_transition(moves=[Move(post_id=locked.pk, from_state=locked.state, to_state=new_state,
                                detail={"decision": decision.pk, "verdict": verdict, "category": category})],
                    actor=Actor.reviewer(reviewer), event_key=f"review:{decision.pk}",
                    updates={"review_claimed_by": None, "review_claimed_until": None, "updated_at": now,
                             "review_priority": F("review_priority") + boost})
    return decision


def _undoable(*, reviewer: Any, since: datetime) -> ReviewDecision | None:
    last = (ReviewDecision.objects.filter(reviewer=reviewer).exclude(verdict=Verdict.UNDO)
            .order_by("-created_at", "-id").first())
    if last is None or last.created_at < since or ReviewDecision.objects.filter(undoes=last).exists():
        return None
    if Appeal.objects.filter(review_decision=last).exists():
        return None  # an appeal's overturn is final: the post is restored, not back in review
    # Only the post's latest word can be taken back: a later decision by someone else stands.
    return last if review_outcome(post=last.post) == last else None


@transaction.atomic
def review_undo(*, reviewer: Any, within_seconds: float | None = None) -> ReviewDecision | None:
    """Withdraw the reviewer's last decision if it is recent; the post returns to review, claimed by them."""
    now = timezone.now()
    window = moderation_settings.REVIEW_UNDO_SECONDS if within_seconds is None else within_seconds
    last = _undoable(reviewer=reviewer, since=now - timedelta(seconds=window))
    if last is None:
        return None
    post = Post.objects.select_for_update().get(pk=last.post_id)
    undo = ReviewDecision.objects.create(post=post, analysis=last.analysis, reviewer=reviewer,
                                         reviewer_username=reviewer.get_username(), verdict=Verdict.UNDO,
                                         undoes=last, created_at=now)
    bank_review_decision_undo(undone=last)
    boost = moderation_settings.REVIEW_ESCALATE_BOOST if last.verdict == Verdict.ESCALATE else 0.0
    new_state = review_state_derive(decision=review_outcome(post=post))
    post_transition(moves=[Move(post_id=post.pk, from_state=post.state, to_state=new_state,
                                detail={"decision": undo.pk, "verdict": Verdict.UNDO, "undoes": last.pk})],
                    actor=Actor.reviewer(reviewer),
                    updates={"review_claimed_by": reviewer, "updated_at": now,
                             "review_claimed_until": now + timedelta(minutes=moderation_settings.REVIEW_CLAIM_MINUTES),
                             "review_priority": F("review_priority") - boost})
    post.refresh_from_db(fields=["state", "current_analysis"])
    appeal_close_moot(post=post, reviewer=reviewer)  # an appeal of the withdrawn decision has nothing left
    return undo


def review_state_derive(*, decision: ReviewDecision | None) -> str:
    """A post's state from its latest standing decision: none or escalate → still in review."""
    if decision is None or decision.verdict == Verdict.ESCALATE:
        return PostState.NEEDS_REVIEW
    return PostState.REVIEWED


def review_claim_release(*, post: Post, reviewer: Any) -> bool:
    """Give a claimed post back to the queue (the reviewer skips it)."""
    return bool(Post.objects.filter(pk=post.pk, review_claimed_by=reviewer).update(
        review_claimed_by=None, review_claimed_until=None))


@dataclass(frozen=True)
class SkippedPost:
    """A post a bulk or cluster decision left alone, and why."""

    post: Post
    reason: str


def review_decide_many(*, posts: Iterable[Post], reviewer: Any, verdict: str, category: str = "",
                       reason: str = "") -> tuple[list[ReviewDecision], list[SkippedPost]]:
    """A bulk action: one decision per post, each in its own transaction (``review_decide``: ledger
    row, lifecycle move, bank entry); posts that can't be decided are skipped with the reason."""
    decided, skipped = [], []
    for post in posts:
        try:
            decided.append(review_decide(post=post, reviewer=reviewer, verdict=verdict, category=category,
                                         reason=reason))
        except ServiceError as exc:
            skipped.append(SkippedPost(post=post, reason=exc.message))
    return decided, skipped


def review_decide_cluster(*, post: Post, reviewer: Any, member_ids: Collection[Any], verdict: str,
                          category: str = "", reason: str = "") -> tuple[list[ReviewDecision], list[SkippedPost]]:
    """One decision for the post and its near-duplicates (``review_cluster``), as confirmed: only
    the members in ``member_ids`` (what the confirmation page listed) are touched, each through
    ``review_decide_many``. Members the cluster leaves alone, and listed posts that are no longer
    near-duplicates of this one, are skipped with the reason; an invalid decision raises before
    anything is written."""
    review_decision_check(post=post, verdict=verdict, category=category if verdict == Verdict.VIOLATING else "",
                          reason=reason)
    wanted = {str(pk) for pk in member_ids}
    members = [m for m in review_cluster(post=post, reviewer=reviewer) if str(m.post.pk) in wanted]
    gone = (Post.objects.filter(client_id=post.client_id, pk__in=wanted - {str(m.post.pk) for m in members})
            .order_by("created_at", "pk"))
    decided, failed = review_decide_many(posts=[m.post for m in members if not m.skip], reviewer=reviewer,
                                         verdict=verdict, category=category, reason=reason)
    skipped = [SkippedPost(post=m.post, reason=m.skip) for m in members if m.skip]
    skipped += [SkippedPost(post=p, reason="no longer a near-duplicate of this post") for p in gone]
    return decided, skipped + failed
