"""Ad-hoc engine requests: questions, groundings and captions about a post, and search queries."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.dispatch import task_send_on_commit
from moderation.models import EngineRequest, Post
from moderation.selectors.posts import post_get, uuid_or_not_found
from moderation.errors import NotFound, ServiceError
from moderation.services.locking import rows_lock_skipping_locked

Kind = EngineRequest.Kind


RATE_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _text_checked(value: Any, *, error_code: str, field: str, limit: int, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise ServiceError(error_code, f"{field} must be a non-empty string.")
    if len(value) > limit or "\x00" in value:
        raise ServiceError(error_code, f"{field} must be at most {limit} characters, without NUL bytes.")
    return value.strip()


def _request_create(*, client: AbstractBaseUser | None, reviewer: AbstractBaseUser | None, post_id: Any,
                    kind: str, params: dict[str, Any]) -> EngineRequest:
    if (client is None) == (reviewer is None):
        raise ValueError("exactly one of client and reviewer asks")
    post = post_get(client=client, post_id=post_id) if client is not None else _post_for_reviewer(
        reviewer=reviewer, post_id=post_id)
    if not post.image:
        raise ServiceError("post_has_no_image", "This post has no image to ask about.")
    origin = EngineRequest.Origin.CLIENT if reviewer is None else EngineRequest.Origin.REVIEWER
    with transaction.atomic():
        request = EngineRequest.objects.create(client_id=post.client_id, post=post, kind=kind, params=params,
                                               origin=origin, reviewer=reviewer)
        requests_wakeup()
    return request


def _post_for_reviewer(*, reviewer: Any, post_id: Any) -> Post:
    """The post, if ``reviewer`` holds its review claim and is within the reviewers' request rate."""
    post = Post.objects.filter(pk=uuid_or_not_found(post_id, what="post")).first()
    if post is None:
        raise NotFound("not_found", "No such post.")
    if post.review_claimed_by_id != reviewer.pk or not post.review_claimed_until or \
            post.review_claimed_until < timezone.now():
        raise ServiceError("review_claim_required", "Only the reviewer holding this post's claim may ask about it.",
                           status=403)
    allowed, seconds = rate_parse(moderation_settings.REVIEWER_REQUEST_RATE)
    since = timezone.now() - timedelta(seconds=seconds)
    recent = EngineRequest.objects.filter(reviewer=reviewer, created_at__gte=since)
    if recent.count() >= allowed:
        raise ServiceError("reviewer_rate_limited",
                           f"At most {moderation_settings.REVIEWER_REQUEST_RATE} questions per reviewer; retry later.",
                           status=429)
    return post


def rate_parse(rate: str) -> tuple[int, int]:
    """``"30/min"`` → ``(30, 60)``: requests allowed per window of seconds (DRF's rate syntax)."""
    number, _, period = rate.partition("/")
    return int(number), RATE_PERIODS[period[:1]]


def requests_wakeup() -> None:
    task_send_on_commit(moderation_settings.REQUEST_TASK, queue=moderation_settings.GPU_QUEUE)


def post_question_ask(*, post_id: Any, question: Any, client: AbstractBaseUser | None = None,
                      reviewer: AbstractBaseUser | None = None) -> EngineRequest:
    """Queue a question about the post's image, asked by its ``client`` or by the ``reviewer`` holding it."""
    question = _text_checked(question, error_code="question_invalid", field="question",
                             limit=moderation_settings.MAX_QUESTION_LENGTH)
    return _request_create(client=client, reviewer=reviewer, post_id=post_id, kind=Kind.QUESTION,
                           params={"question": question})


def post_grounding_request(*, post_id: Any, phrases: Any, client: AbstractBaseUser | None = None,
                           reviewer: AbstractBaseUser | None = None) -> EngineRequest:
    """Queue boxes for ``phrases`` in the post's image, asked by its ``client`` or the ``reviewer`` holding it."""
    limit = moderation_settings.MAX_PHRASES
    if not isinstance(phrases, list) or not 1 <= len(phrases) <= limit:
        raise ServiceError("phrases_invalid", f"phrases must be a list of 1 to {limit} strings.")
    cleaned = [_text_checked(p, error_code="phrase_invalid", field="phrase",
                             limit=moderation_settings.MAX_PHRASE_LENGTH) for p in phrases]
    return _request_create(client=client, reviewer=reviewer, post_id=post_id, kind=Kind.GROUNDING,
                           params={"phrases": list(dict.fromkeys(cleaned))})


def post_caption_request(*, client: AbstractBaseUser, post_id: Any, prompt: Any = None) -> EngineRequest:
    if prompt is not None and not (isinstance(prompt, str) and prompt.strip() == ""):
        prompt = _text_checked(prompt, error_code="prompt_invalid", field="prompt",
                               limit=moderation_settings.MAX_CAPTION_PROMPT_LENGTH)
    else:
        prompt = None
    return _request_create(client=client, reviewer=None, post_id=post_id, kind=Kind.CAPTION,
                           params={"prompt": prompt})


@transaction.atomic
def request_claim_batch(*, limit: int) -> tuple[uuid.UUID, list[EngineRequest]]:
    """Move up to ``limit`` pending requests to ``running`` under a new claim token."""
    token = uuid.uuid4()
    ids = list(rows_lock_skipping_locked(EngineRequest.objects.filter(state=EngineRequest.State.PENDING).order_by("created_at"))
               .values_list("id", flat=True)[:limit])
    EngineRequest.objects.filter(id__in=ids, state=EngineRequest.State.PENDING).update(
        state=EngineRequest.State.RUNNING, claim_token=token, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    return token, list(EngineRequest.objects.filter(claim_token=token, state=EngineRequest.State.RUNNING)
                       .select_related("post").order_by("created_at"))


def request_complete(*, token: uuid.UUID, request_id: uuid.UUID, result: Any, model_version: str) -> bool:
    return bool(EngineRequest.objects.filter(pk=request_id, claim_token=token, state=EngineRequest.State.RUNNING)
                .update(state=EngineRequest.State.DONE, result=result, model_version=model_version,
                        completed_at=timezone.now()))


def request_fail(*, token: uuid.UUID, request_id: uuid.UUID, error: str) -> bool:
    return bool(EngineRequest.objects.filter(pk=request_id, claim_token=token, state=EngineRequest.State.RUNNING)
                .update(state=EngineRequest.State.FAILED, error=error[:2000], completed_at=timezone.now()))


def requests_release_stale(*, older_than_s: float) -> int:
    """Give requests claimed by a dead worker back to the queue (or fail them after the attempts)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = EngineRequest.objects.filter(state=EngineRequest.State.RUNNING, claimed_at__lt=cutoff)
    failed = stale.filter(attempts__gte=moderation_settings.MAX_ATTEMPTS).update(
        state=EngineRequest.State.FAILED, error="worker lost the request too often", completed_at=timezone.now())
    retried = stale.update(state=EngineRequest.State.PENDING, claim_token=None)
    if retried:
        requests_wakeup()
    return failed + retried
