"""Notices (DSA Art. 16 and 22): a report about a post sends it to review; the notifier hears the outcome."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import Notice, Post, PostState, ReviewDecision
from moderation.selectors.posts import post_get
from moderation.selectors.reviews import review_category_slugs, review_outcome
from moderation.errors import ServiceError
from moderation.services.lifecycle import Actor, Move, post_transition
from moderation.services.webhooks import webhook_event_deliveries_create

EXPLANATION_LIMIT = 5000
REFERENCE_LIMIT = 255
# A post still being analysed has no verdict to contest yet; a failed one has none at all.
UNDECIDED_STATES = {PostState.QUEUED, PostState.ANALYZING, PostState.FAILED}
# States in which a notice sends the post to a person; in the others one has already decided.
TO_REVIEW_STATES = {PostState.ALLOWED, PostState.NEEDS_REVIEW}
ReporterType = Notice.ReporterType


def _text_fits(value: Any, *, limit: int, required: bool) -> bool:
    return (isinstance(value, str) and bool(value.strip() or not required) and len(value) <= limit
            and "\x00" not in value)


def notice_submit(*, client: AbstractBaseUser, post_id: Any, reporter_type: str, category: str,
                  explanation: str, reporter_reference: str = "") -> Notice:
    """Record a notice about one of the client's posts; an allowed post goes to review.

    A trusted flagger's notice raises the post's review priority by ``NOTICE_PRIORITY_BOOST``,
    once per round of review. On a post already removed or decided by a reviewer, the notice is
    answered at once with that outcome. Only what the client sends is stored.
    """
    post = post_get(client=client, post_id=post_id)
    if reporter_type not in ReporterType.values:
        raise ServiceError("reporter_type_invalid", f"reporter_type must be one of {', '.join(ReporterType.values)}.")
    if category not in review_category_slugs(post=post):
        raise ServiceError("category_invalid", f"{category!r} is not a category of the post's policy.")
    if not _text_fits(explanation, limit=EXPLANATION_LIMIT, required=True):
        raise ServiceError("explanation_invalid",
                           f"explanation must be a non-empty text of at most {EXPLANATION_LIMIT} characters, no NUL.")
    if not _text_fits(reporter_reference or "", limit=REFERENCE_LIMIT, required=False):
        raise ServiceError("reporter_reference_invalid",
                           f"reporter_reference must be at most {REFERENCE_LIMIT} characters, no NUL.")
    with transaction.atomic():
        locked = Post.objects.select_for_update().get(pk=post.pk)
        if locked.state in UNDECIDED_STATES:
            raise ServiceError("post_not_decided", f"The post is {locked.state}; a notice needs a decided post.",
                               status=409)
        notice = Notice.objects.create(post=locked, client=client, reporter_type=reporter_type, category=category,
                                       explanation=explanation.strip(),
                                       reporter_reference=(reporter_reference or "").strip())
        if locked.state in TO_REVIEW_STATES:
            _send_to_review(post=locked, notice=notice, client=client)
        else:
            outcome = review_outcome(post=locked)
            notices_decide(post_ids=[locked.pk], decisions={locked.pk: outcome.pk if outcome else None})
    return notice


def _send_to_review(*, post: Post, notice: Notice, client: AbstractBaseUser) -> None:
    trusted = notice.reporter_type == ReporterType.TRUSTED_FLAGGER
    already = Notice.objects.filter(post=post, reporter_type=ReporterType.TRUSTED_FLAGGER,
                                    decided_at__isnull=True).exclude(pk=notice.pk).exists()
    boost = moderation_settings.NOTICE_PRIORITY_BOOST if trusted and not already else 0.0
    post_transition(moves=[Move(post_id=post.pk, from_state=post.state, to_state=PostState.NEEDS_REVIEW,
                                detail={"action": "notice", "notice": str(notice.pk),
                                        "reporter_type": notice.reporter_type})],
                    actor=Actor.client(client.pk), updates={"review_priority": F("review_priority") + boost})


def notices_decide(*, post_ids: Iterable[Any], decisions: Mapping[Any, int | None]) -> int:
    """Answer the posts' open notices (those not answered, or answered by a decision since undone)
    with the post's outcome, and tell each notifier through a ``notice.decided`` webhook."""
    notices = list(Notice.objects.filter(post_id__in=list(post_ids))
                   .filter(Q(decided_at__isnull=True) | Q(decision__undone_by__isnull=False))
                   .select_related("post"))
    if not notices:
        return 0
    now = timezone.now()
    verdicts = dict(ReviewDecision.objects.filter(pk__in=[d for d in decisions.values() if d])
                    .values_list("pk", "verdict"))
    for notice in notices:
        notice.decision_id, notice.decided_at = decisions.get(notice.post_id), now
        notice.outcome = notice_outcome(post=notice.post, verdict=verdicts.get(notice.decision_id))
    Notice.objects.bulk_update(notices, ["decision", "decided_at", "outcome"])
    webhook_event_deliveries_create(events=[(n.post, f"notice:{n.pk}:{n.decision_id or 0}", notice_payload(n))
                                            for n in notices])
    return len(notices)


def notice_outcome(*, post: Post, verdict: str | None) -> str:
    """``restricted`` when the post was removed or a reviewer found it violating, else ``no_action``."""
    restricted = (post.state == PostState.REMOVED
                  or post.state == PostState.REVIEWED and verdict == ReviewDecision.Verdict.VIOLATING)
    return Notice.Outcome.RESTRICTED if restricted else Notice.Outcome.NO_ACTION


def notice_payload(notice: Notice) -> dict[str, Any]:
    post = notice.post
    return {"type": "notice.decided",
            "notice": {"id": str(notice.pk), "reporter_type": notice.reporter_type,
                       "reporter_reference": notice.reporter_reference or None, "category": notice.category,
                       "outcome": notice.outcome, "created_at": notice.created_at.isoformat(),
                       "decided_at": notice.decided_at.isoformat() if notice.decided_at else None},
            "post": {"id": str(post.pk), "external_id": post.external_id, "status": post.state}}
