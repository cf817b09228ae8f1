"""Text → image search over a client's own posts, by CLIP embedding."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from moderation.conf import moderation_settings
from moderation.models import EngineRequest, Post
from moderation.services.errors import ServiceError
from moderation.services.requests import requests_wakeup

POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class SearchHit:
    post_id: str
    score: float


def clip_version(model_version: str) -> str:
    """The CLIP part of an analysis' model version: only embeddings of one CLIP are comparable."""
    return next((part for part in model_version.split("+") if part.startswith("clip:")), model_version)


def query_embedding(*, client: AbstractBaseUser, query: str) -> tuple[np.ndarray, str]:
    """The query's CLIP text embedding and the model that made it; asks a worker if it is new.

    Raises:
        ServiceError: 503 ``search_unavailable`` when no worker answered within SEARCH_TIMEOUT.
    """
    digest = hashlib.sha256(query.encode()).hexdigest()
    done = (EngineRequest.objects.filter(kind=EngineRequest.Kind.QUERY, state=EngineRequest.State.DONE,
                                         params__sha256=digest).order_by("-completed_at").first())
    if done is None:
        done = _query_embed_wait(client=client, query=query, digest=digest)
    return np.asarray(done.result["embedding"], dtype=np.float32), done.model_version


def _query_embed_wait(*, client: AbstractBaseUser, query: str, digest: str) -> EngineRequest:
    with transaction.atomic():
        request = EngineRequest.objects.create(client=client, kind=EngineRequest.Kind.QUERY,
                                               params={"query": query, "sha256": digest})
        requests_wakeup()
    deadline = time.monotonic() + moderation_settings.SEARCH_TIMEOUT
    while time.monotonic() < deadline:
        request.refresh_from_db(fields=["state", "result", "model_version", "error"])
        if request.state == EngineRequest.State.DONE:
            return request
        if request.state == EngineRequest.State.FAILED:
            break
        time.sleep(POLL_INTERVAL_S)
    raise ServiceError("search_unavailable", "No model worker answered in time; retry shortly.", status=503)


def search_posts(*, client: AbstractBaseUser, query: str, k: int) -> list[SearchHit]:
    """The ``k`` posts of ``client`` whose image embeddings are nearest (cosine) to ``query``."""
    vector, model_version = query_embedding(client=client, query=query)
    rows = list(Post.objects.filter(client=client, current_analysis__image_embedding__isnull=False,
                                    current_analysis__model_version__startswith=clip_version(model_version))
                .values_list("id", "current_analysis__image_embedding"))
    return nearest_exact(rows=rows, vector=vector, k=k)


def nearest_exact(*, rows: list[tuple[Any, bytes]], vector: np.ndarray, k: int) -> list[SearchHit]:
    """Exact cosine search (embeddings are L2-normalised, so a dot product); ties by id."""
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), -1)
    scores = matrix @ vector
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], str(rows[i][0])))[:k]
    return [SearchHit(post_id=str(rows[i][0]), score=round(float(scores[i]), 6)) for i in order]
