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
from moderation.models import EngineRequest
from moderation.selectors import post_get
from moderation.services.errors import ServiceError
from moderation.services.locking import rows_lock_skipping_locked

Kind = EngineRequest.Kind


def _text_checked(value: Any, *, field: str, limit: int, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise ServiceError(f"{field}_invalid", f"{field} must be a non-empty string.")
    if len(value) > limit or "\x00" in value:
        raise ServiceError(f"{field}_invalid", f"{field} must be at most {limit} characters, without NUL bytes.")
    return value.strip()


def _request_create(*, client: AbstractBaseUser, post_id: Any, kind: str, params: dict[str, Any]) -> EngineRequest:
    post = post_get(client=client, post_id=post_id)
    if not post.image:
        raise ServiceError("post_has_no_image", "This post has no image to ask about.")
    with transaction.atomic():
        request = EngineRequest.objects.create(client=client, post=post, kind=kind, params=params)
        requests_wakeup()
    return request


def requests_wakeup() -> None:
    task_send_on_commit(moderation_settings.REQUEST_TASK, queue=moderation_settings.GPU_QUEUE)


def post_question_ask(*, client: AbstractBaseUser, post_id: Any, question: Any) -> EngineRequest:
    question = _text_checked(question, field="question", limit=moderation_settings.MAX_QUESTION_LENGTH)
    return _request_create(client=client, post_id=post_id, kind=Kind.QUESTION, params={"question": question})


def post_grounding_request(*, client: AbstractBaseUser, post_id: Any, phrases: Any) -> EngineRequest:
    limit = moderation_settings.MAX_PHRASES
    if not isinstance(phrases, list) or not 1 <= len(phrases) <= limit:
        raise ServiceError("phrases_invalid", f"phrases must be a list of 1 to {limit} strings.")
    cleaned = [_text_checked(p, field="phrase", limit=moderation_settings.MAX_PHRASE_LENGTH) for p in phrases]
    return _request_create(client=client, post_id=post_id, kind=Kind.GROUNDING,
                           params={"phrases": list(dict.fromkeys(cleaned))})


def post_caption_request(*, client: AbstractBaseUser, post_id: Any, prompt: Any = None) -> EngineRequest:
    if prompt is not None and not (isinstance(prompt, str) and prompt.strip() == ""):
        prompt = _text_checked(prompt, field="prompt", limit=moderation_settings.MAX_CAPTION_PROMPT_LENGTH)
    else:
        prompt = None
    return _request_create(client=client, post_id=post_id, kind=Kind.CAPTION, params={"prompt": prompt})


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
