"""Appeals (DSA Art. 20): the author contests a restriction; a reviewer who took no part decides it."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.errors import ServiceError
from moderation.models import Appeal, Post, PostState, ReviewDecision
from moderation.selectors.posts import post_get
from moderation.services.banks import bank_review_decision_record
from moderation.services.lifecycle import Actor, Move, post_transition
from moderation.services.statements import post_restriction
from moderation.services.webhooks import webhook_event_deliveries_create

STATEMENT_LIMIT = 5000
NOTE_LIMIT = 5000
Decision = Appeal.Decision
# What a reviewer may decide; ``moot`` is the service's own outcome when the decision appealed is gone.
JUDGMENTS = (Decision.UPHOLD, Decision.OVERTURN)


def _text_fits(value: Any, *, limit: int, required: bool) -> bool:
    return (isinstance(value, str) and bool(value.strip() or not required) and len(value) <= limit
            and "\x00" not in value)


def appeal_submit(*, client: AbstractBaseUser, post_id: Any, statement: str) -> Appeal:
    """Open an appeal on one of the client's restricted posts, within ``APPEAL_WINDOW_DAYS`` of the
    restriction; at most one open appeal per post."""
    post = post_get(client=client, post_id=post_id)
    if not _text_fits(statement, limit=STATEMENT_LIMIT, required=True):
        raise ServiceError("statement_invalid",
                           f"statement must be a non-empty text of at most {STATEMENT_LIMIT} characters, no NUL.")
    with transaction.atomic():
        locked = Post.objects.select_for_update().get(pk=post.pk)
        restriction = post_restriction(post=locked)
        if restriction is None:
            raise ServiceError("not_appealable", f"The post is {locked.state} and not restricted; nothing to appeal.",
                               status=409)
        closes = restriction.applied_at + timedelta(days=moderation_settings.APPEAL_WINDOW_DAYS)
        if timezone.now() > closes:
            raise ServiceError("appeal_window_closed", f"The window to appeal closed at {closes.isoformat()}.",
                               status=409)
        if Appeal.objects.filter(post=locked, decided_at__isnull=True).exists():
            raise ServiceError("appeal_open", "The post already has an open appeal.", status=409)
        appeal = Appeal.objects.create(post=locked, client=client, statement=statement.strip(),
                                       restriction_puid=restriction.puid,
                                       restriction_category=restriction.category_slug or "",
                                       restriction_automated=restriction.decision is None)
        post_transition(moves=[Move(post_id=locked.pk, from_state=locked.state, to_state=locked.state,
                                    detail={"action": "appeal", "appeal": str(appeal.pk)})],
                        actor=Actor.client(client.pk))
    return appeal


def appeal_took_part(*, appeal: Appeal, reviewer: AbstractBaseUser) -> bool:
    """Whether the reviewer decided anything on the appealed post, a review or an earlier appeal (by
    account, or by the name kept)."""
    name = reviewer.get_username()
    return (ReviewDecision.objects.filter(Q(reviewer=reviewer) | Q(reviewer_username=name),
                                          post_id=appeal.post_id).exists()
            or Appeal.objects.filter(Q(decided_by=reviewer) | Q(decided_by_username=name),
                                     post_id=appeal.post_id).exclude(pk=appeal.pk).exists())


@transaction.atomic
def appeal_decide(*, appeal: Appeal, reviewer: AbstractBaseUser, decision: str, note: str = "") -> Appeal:
    """Uphold the restriction or overturn it. An overturn writes a ``not_violating`` decision by the
    reviewer (the retraining label) and restores the post; the client gets ``post.appeal_decided``.

    A reviewer who took part in a decision on the post is refused (403) and nothing is written. An
    appeal whose decision no longer stands is closed as ``moot`` instead, whatever was asked.
    """
    if decision not in JUDGMENTS:
        raise ServiceError("appeal_decision_invalid", f"decision must be one of {', '.join(JUDGMENTS)}.")
    if not _text_fits(note or "", limit=NOTE_LIMIT, required=False):
        raise ServiceError("appeal_note_invalid", f"note must be at most {NOTE_LIMIT} characters, no NUL.")
    locked = Appeal.objects.select_for_update().select_related("post").get(pk=appeal.pk)
    if locked.decided_at is not None:
        raise ServiceError("appeal_decided", "The appeal has already been decided.", status=409)
    if appeal_took_part(appeal=locked, reviewer=reviewer):
        raise ServiceError("appeal_reviewer_involved",
                           "You took part in a decision on this post; another reviewer must decide the appeal.",
                           status=403)
    post = Post.objects.select_for_update().get(pk=locked.post_id)
    if _contested_gone(appeal=locked, post=post):  # the decision appealed was undone since (before moot closing)
        return _moot(appeal=locked, post=post, reviewer=reviewer)
    now = timezone.now()
    label = _overturn(post=post, appeal=locked, reviewer=reviewer, now=now) if decision == Decision.OVERTURN else None
    if label is None:
        post_transition(moves=[Move(post_id=post.pk, from_state=post.state, to_state=post.state,
                                    detail={"action": "appeal_uphold", "appeal": str(locked.pk)})],
                        actor=Actor.reviewer(reviewer))
    locked.decided_by, locked.decided_by_username = reviewer, reviewer.get_username()
    locked.decision, locked.note, locked.decided_at, locked.review_decision = decision, (note or "").strip(), now, label
    locked.save(update_fields=["decided_by", "decided_by_username", "decision", "note", "decided_at",
                               "review_decision"])
    post.refresh_from_db()
    locked.post = post
    webhook_event_deliveries_create(events=[(post, f"appeal:{locked.pk}", appeal_payload(locked))])
    return locked


MOOT_NOTE = "The decision appealed was withdrawn before the appeal was decided; nothing is left to decide."


def _contested_gone(*, appeal: Appeal, post: Post) -> bool:
    restriction = post_restriction(post=post)
    return restriction is None or restriction.puid != appeal.restriction_puid


def appeal_close_moot(*, post: Post, reviewer: AbstractBaseUser) -> Appeal | None:
    """Close the post's open appeal (at most one) when the decision it contests no longer restricts the
    post (the reviewer who made it undid it): outcome ``moot``, the client told through
    ``post.appeal_decided``. The caller holds the post locked; a later restriction can be appealed anew."""
    appeal = Appeal.objects.select_for_update().filter(post=post, decided_at__isnull=True).first()
    if appeal is None or not _contested_gone(appeal=appeal, post=post):
        return None
    return _moot(appeal=appeal, post=post, reviewer=reviewer)


def _moot(*, appeal: Appeal, post: Post, reviewer: AbstractBaseUser) -> Appeal:
    appeal.decision, appeal.note, appeal.decided_at, appeal.post = Decision.MOOT, MOOT_NOTE, timezone.now(), post
    appeal.save(update_fields=["decision", "note", "decided_at"])
    post_transition(moves=[Move(post_id=post.pk, from_state=post.state, to_state=post.state,
                                detail={"action": "appeal_moot", "appeal": str(appeal.pk)})],
                    actor=Actor.reviewer(reviewer))
    webhook_event_deliveries_create(events=[(post, f"appeal:{appeal.pk}", appeal_payload(appeal))])
    return appeal


def _overturn(*, post: Post, appeal: Appeal, reviewer: AbstractBaseUser, now: Any) -> ReviewDecision:
    label = ReviewDecision.objects.create(
        post=post, analysis=post.current_analysis, reviewer=reviewer, reviewer_username=reviewer.get_username(),
        verdict=ReviewDecision.Verdict.NOT_VIOLATING, reason=f"Appeal {appeal.pk} overturned.", created_at=now)
    bank_review_decision_record(decision=label)  # copies of the image are no longer removed as known content
    post_transition(moves=[Move(post_id=post.pk, from_state=post.state, to_state=PostState.RESTORED,
                                detail={"action": "appeal_overturn", "appeal": str(appeal.pk),
                                        "decision": label.pk})],
                    actor=Actor.reviewer(reviewer), updates={"updated_at": now})
    return label


def appeal_payload(appeal: Appeal) -> dict[str, Any]:
    """The ``post.appeal_decided`` webhook: the outcome, never who decided."""
    post = appeal.post
    return {"type": "post.appeal_decided",
            "appeal": {"id": str(appeal.pk), "decision": appeal.decision, "note": appeal.note or None,
                       "created_at": appeal.created_at.isoformat(),
                       "decided_at": appeal.decided_at.isoformat() if appeal.decided_at else None},
            "post": {"id": str(post.pk), "external_id": post.external_id, "status": post.state}}
