"""One worker step: claim a batch, run the engine on it, record the verdicts."""
from __future__ import annotations

import os
import socket
import uuid
from typing import Callable, Sequence

from moderation.models import Post
from moderation.services.analysis import (analysis_record_batch, post_attempt_fail, post_claim_batch,
                                          post_engine_inputs)
from moderation.services.learning import scoring_classifier
from moderation.services.policies import policy_active, policy_for_engine
from vlm_engine.engine import Engine
from vlm_engine.types import EngineInputError

MAX_BATCHES_PER_WAKEUP = 64


def worker_name(celery_hostname: str | None = None) -> str:
    """A name that survives restarts (Celery's ``-n`` node name), so a restarted worker can
    release what its dead predecessor had claimed."""
    return os.environ.get("MODERATION_WORKER_NAME") or celery_hostname or socket.gethostname()


def batches_drain(*, engine: Callable[[], Engine], batch_size: int, worker: str) -> int:
    """Analyse queued posts batch after batch until none are left; returns how many were claimed.

    ``engine`` is called only once there is work, so an idle wake-up never loads the models.
    """
    total = 0
    for _ in range(MAX_BATCHES_PER_WAKEUP):
        claimed = batch_analyze(engine=engine, batch_size=batch_size, worker=worker)
        total += claimed
        if claimed < batch_size:
            break
    return total


def batch_analyze(*, engine: Callable[[], Engine], batch_size: int, worker: str) -> int:
    token, posts = post_claim_batch(limit=batch_size, worker=worker)
    if posts:
        _analyze_claimed(engine=engine(), token=token, posts=posts, worker=worker)
    return len(posts)


def _analyze_claimed(*, engine: Engine, token: uuid.UUID, posts: Sequence[Post], worker: str) -> None:
    policy = policy_active()
    engine_policy = policy_for_engine(policy=policy)
    # Read per batch: a promoted or rolled-back head, or a new label, applies to the next batch.
    classifier, version, scoring = scoring_classifier(categories=[c.slug for c in engine_policy.categories])
    pending = list(posts)
    # A bad input fails only its own post; the rest of the batch is analysed again without it.
    while pending:
        try:
            results = engine.analyze(post_engine_inputs(posts=pending), engine_policy, classifier=classifier)
        except EngineInputError as exc:
            post_attempt_fail(token=token, post_id=exc.key, error=str(exc), worker=worker, permanent=True)
            pending = [p for p in pending if str(p.pk) != exc.key]
            continue
        except RuntimeError as exc:
            # Torch reports device faults (CUDA errors, out of memory) as RuntimeError: the batch
            # goes back to the queue with the attempt counted, so a poisoned post ends in "failed".
            for post in pending:
                post_attempt_fail(token=token, post_id=post.pk, error=f"{type(exc).__name__}: {exc}",
                                  worker=worker)
            return
        analysis_record_batch(token=token, policy=policy, results=results, worker=worker, classifier=version,
                              scoring=scoring)
        return
