"""Text → image search over a client's own posts, by CLIP embedding."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import router, transaction
from django.db.models import Q, QuerySet

from moderation.conf import moderation_settings
from moderation.models import EngineRequest, Post
from moderation.selectors.posts import clip_version
from moderation.errors import ServiceError
from moderation.services.requests import requests_wakeup
from moderation.services.search_pgvector import VECTOR_MAX_DIMENSIONS, pgvector_version, search_index_candidates

POLL_INTERVAL_S = 0.05
# Scores closer than this may be ordered differently by pgvector and NumPy (float32 sums).
TIE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class SearchHit:
    post_id: str
    score: float


def query_embedding(*, client: AbstractBaseUser, query: str) -> tuple[np.ndarray, str]:
    """The query's CLIP text embedding and the model that made it; asks a worker if this client
    has not searched it before.

    Raises:
        ServiceError: 503 ``search_unavailable`` when no worker answered within SEARCH_TIMEOUT.
    """
    digest = hashlib.sha256(query.encode()).hexdigest()
    # Only this client's earlier queries: a shared cache would let one client time whether another
    # searched a string (answered from the database vs embedded by a worker).
    done = (EngineRequest.objects.filter(client=client, kind=EngineRequest.Kind.QUERY,
                                         state=EngineRequest.State.DONE, params__sha256=digest)
            .order_by("-completed_at").first())
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
    """The ``k`` posts of ``client`` whose image embeddings are nearest (cosine) to ``query``.

    pgvector (HNSW) proposes candidates where the database has it, NumPy otherwise; either
    way the hits are scored and ordered by ``nearest_exact``, so the two paths agree.
    """
    vector, model_version = query_embedding(client=client, query=query)
    return search_nearest(client_id=client.pk, clip=clip_version(model_version), vector=vector, k=k,
                          using=router.db_for_read(Post))


def search_nearest(*, client_id: Any, clip: str, vector: np.ndarray, k: int, using: str) -> list[SearchHit]:
    """The ``k`` nearest searchable posts of one client to ``vector``, on database ``using``."""
    posts = searchable_posts(client_id=client_id, clip=clip, using=using)
    pgvector = pgvector_version(using=using)  # pgvector_supports, with the version kept for the candidate query
    if pgvector is None or not 0 < len(vector) <= VECTOR_MAX_DIMENSIONS:
        return nearest_exact(rows=_embeddings(posts), vector=vector, k=k)
    return nearest_pgvector(posts=posts, client_id=client_id, clip=clip, vector=vector, k=k, using=using,
                            pgvector=pgvector)


def searchable_posts(*, client_id: Any, clip: str, using: str) -> QuerySet[Post]:
    """The client's posts whose current analysis has an image embedding made by ``clip``, content not purged.

    Exactly the posts ``SearchEmbedding`` holds for the client and ``clip`` where the pgvector index exists.
    """
    # The CLIP part leads the model version ("clip:…@rev+owlv2:…"): match it whole, not as a prefix of a longer one.
    same_clip = Q(current_analysis__model_version=clip) | Q(current_analysis__model_version__startswith=f"{clip}+")
    return (Post.objects.using(using)
            .filter(same_clip, client_id=client_id, current_analysis__image_embedding__isnull=False,
                    content_deleted_at__isnull=True))


def _embeddings(posts: QuerySet[Post]) -> list[tuple[Any, bytes]]:
    return list(posts.values_list("id", "current_analysis__image_embedding"))


def nearest_pgvector(*, posts: QuerySet[Post], client_id: Any, clip: str, vector: np.ndarray, k: int,
                     using: str, pgvector: tuple[int, ...] | None = None) -> list[SearchHit]:
    """HNSW candidates rescored by ``nearest_exact``; the exact search where they can't be trusted.

    The index is asked for ``2k + 10`` candidates: the margin absorbs HNSW's approximation and
    the float rounding between pgvector's distance and NumPy's dot product. When fewer come back
    (a small client, or a filtered scan that ran dry) or the last candidate scores within
    ``TIE_TOLERANCE`` of the k-th (a tie, e.g. duplicate images, may run past the margin), the
    exact search answers, so ties break by id exactly as on the exact path.
    """
    limit = 2 * k + 10
    rows = search_index_candidates(client_id=client_id, clip=clip, vector=vector, limit=limit, using=using,
                                   pgvector=pgvector)
    ranked = nearest_exact(rows=rows, vector=vector, k=limit)
    if len(ranked) < limit or ranked[-1].score >= ranked[k - 1].score - TIE_TOLERANCE:
        return nearest_exact(rows=_embeddings(posts), vector=vector, k=k)
    return ranked[:k]


def nearest_exact(*, rows: list[tuple[Any, bytes]], vector: np.ndarray, k: int) -> list[SearchHit]:
    """Exact cosine search (embeddings are L2-normalised, so a dot product); ties by id.

    Scores are summed in float64 and rounded to 6 places before ordering, so a row scores the
    same whichever other rows it is ranked with (float32 BLAS sums depend on the batch), and
    the pgvector path, which rescores its candidates here, orders them as this one does.
    """
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype="<f4").reshape(len(rows), -1)
    scores = np.round(matrix.astype(np.float64) @ np.asarray(vector, dtype=np.float64), 6).tolist()
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], str(rows[i][0])))[:k]
    return [SearchHit(post_id=str(rows[i][0]), score=scores[i]) for i in order]
