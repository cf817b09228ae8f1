"""Selectors: the app's reads, scoped to the client that asks."""
from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from moderation.models import EngineRequest, Post, PostState
from moderation.errors import NotFound

DECISION_STATES = {"allow": PostState.ALLOWED, "review": PostState.NEEDS_REVIEW, "remove": PostState.REMOVED}


def post_list(*, client: AbstractBaseUser, status: str | None = None,
              decision: str | None = None) -> QuerySet[Post]:
    """The client's own posts, newest first, with their current analysis joined."""
    qs = Post.objects.filter(client=client).select_related("current_analysis", "current_analysis__policy")
    if status:
        qs = qs.filter(state=status)
    if decision:
        qs = qs.filter(current_analysis__decision=decision)
    return qs.order_by("-created_at", "-id")


def uuid_or_not_found(value: uuid.UUID | str, *, what: str) -> uuid.UUID:
    """A path id as a UUID; anything else is simply not found (a JSON 404, never an HTML page)."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound("not_found", f"No such {what}.")


def post_get(*, client: AbstractBaseUser, post_id: uuid.UUID | str) -> Post:
    """One of the client's posts; another client's post is indistinguishable from a missing one."""
    try:
        return post_list(client=client).get(pk=uuid_or_not_found(post_id, what="post"))
    except Post.DoesNotExist:
        raise NotFound("not_found", "No such post.")


def clip_version(model_version: str) -> str:
    """The CLIP part of an analysis' model version: only embeddings of one CLIP are comparable."""
    return next((part for part in model_version.split("+") if part.startswith("clip:")), model_version)


def text_role_version(model_version: str) -> str | None:
    """The text role's part of an analysis' model version (None: it ran without one); only sentence
    embeddings of one text role are comparable."""
    return next((part for part in model_version.split("+") if part.startswith("text:")), None)


def engine_request_summary(request: EngineRequest) -> dict[str, Any]:
    """An ad-hoc request as the post page and the API show it."""
    return {"id": str(request.pk), "kind": request.kind, "params": request.params, "status": request.state,
            "result": request.result, "error": request.error or None}
