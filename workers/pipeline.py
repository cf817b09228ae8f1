"""One worker step: claim a batch, run the engine on it, record the verdicts."""
from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from moderation.models import Post, PostState
from moderation.services.analysis import (analysis_record_batch, post_attempt_fail, post_claim_batch,
                                          post_claim_return, post_claim_start, post_engine_inputs)
from moderation.services.banks import bank_match_batch
from moderation.services.learning import precedents_current, scoring_classifier
from moderation.services.policies import policy_active, policy_for_engine
from vlm_engine.engine import Engine
from vlm_engine.imaging import DecodedImage
from vlm_engine.reading import Reading
from vlm_engine.types import EngineInputError, PostInput

MAX_BATCHES_PER_WAKEUP = 64


def worker_name(celery_hostname: str | None = None) -> str:
    """A name that survives restarts (Celery's ``-n`` node name), so a restarted worker can
    release what its dead predecessor had claimed."""
    return os.environ.get("MODERATION_WORKER_NAME") or celery_hostname or socket.gethostname()


def batches_drain(*, engine: Callable[[], Engine], batch_size: int, worker: str,
                  stopping: Callable[[], bool] = lambda: False, finished: Callable[[], None] = lambda: None) -> int:
    """Analyse queued posts batch after batch until none are left; returns how many were claimed.

    While the engine runs one batch, the next is claimed and its images are loaded, decoded
    and read by the OCR reader in a background thread (Pillow and ONNX Runtime work outside the
    GIL), so the accelerator waits neither on JPEG decoding nor on OCR between batches. Only a
    full batch of first attempts is followed by a claim ahead: a post being retried may be what kills workers. A claim ahead counts no
    attempt until its batch starts, so a worker killed meanwhile charges it nothing; when
    ``stopping()`` turns true (a warm shutdown) the batch in hand is finished and the one
    claimed ahead is given back uncharged. ``finished`` is called after each batch (the
    worker's heartbeat). ``engine`` is called only once there is work, so an idle wake-up
    never loads the models.
    """
    total = 0
    if stopping():  # a wake-up the solo pool had already received when the shutdown began
        return total
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-ahead") as decoder:
        claim = functools.partial(_batch_claim, engine=engine, batch_size=batch_size, worker=worker, decoder=decoder)
        batch = claim()
        for number in range(1, MAX_BATCHES_PER_WAKEUP + 1):
            if batch is None:
                break
            if not batch.charged:
                post_claim_start(token=batch.token, posts=batch.posts)
            total += len(batch.posts)
            first_attempts = all(post.attempts == 1 for post in batch.posts)
            full = len(batch.posts) == batch_size
            # A short batch of first attempts means the queue ran dry; a retried post is claimed
            # alone, so after one the queue may still hold more.
            more = number < MAX_BATCHES_PER_WAKEUP and (full or not first_attempts)
            ahead = more and full and first_attempts and not stopping()
            following = claim(charge=False) if ahead else None
            try:
                _analyze_claimed(engine=engine(), batch=batch, worker=worker)
            except BaseException:
                if following is not None:  # claimed ahead, never started: no attempt is charged
                    post_claim_return(token=following.token, worker=worker)
                raise
            finished()
            if stopping():
                if following is not None:
                    post_claim_return(token=following.token, worker=worker)
                break
            if number == MAX_BATCHES_PER_WAKEUP or (not more and not _requeued(batch)):
                break  # the wake-up the requeue sent will carry on
            # A claim ahead finds nothing when the batch ran the queue dry; posts this batch gave
            # back to the queue (to be retried alone) are claimed now, not at the next wake-up.
            batch = following if following is not None else claim()
    return total


def _requeued(batch: _Batch) -> bool:
    """Whether a post of the batch went back to the queue, to be retried alone."""
    return Post.objects.filter(pk__in=[p.pk for p in batch.posts], state=PostState.QUEUED).exists()


def batch_analyze(*, engine: Callable[[], Engine], batch_size: int, worker: str) -> int:
    """Claim one batch and analyse it (decoding in this thread); returns how many were claimed."""
    batch = _batch_claim(engine=engine, batch_size=batch_size, worker=worker, decoder=None)
    if batch is not None:
        _analyze_claimed(engine=engine(), batch=batch, worker=worker)
    return 0 if batch is None else len(batch.posts)


@dataclass
class _Batch:
    token: uuid.UUID
    posts: list[Post]
    charged: bool
    # The batch's engine inputs and decoded images, being prepared by the decode thread.
    prepared: Future[_Prepared | None] | None = None


@dataclass(frozen=True)
class _Prepared:
    inputs: list[PostInput]
    decoded: list[DecodedImage | None]
    decode_ms: float
    readings: list[Reading]  # the OCR reader's, read in the same thread (ONNX Runtime leaves the GIL)
    read_ms: float


def _batch_claim(*, engine: Callable[[], Engine], batch_size: int, worker: str,
                 decoder: ThreadPoolExecutor | None, charge: bool = True) -> _Batch | None:
    token, posts = post_claim_batch(limit=batch_size, worker=worker, charge=charge)
    if not posts:
        return None
    batch = _Batch(token=token, posts=posts, charged=charge)
    if decoder is not None:
        batch.prepared = decoder.submit(_prepare, engine(), posts)
    return batch


def _prepare(engine: Engine, posts: Sequence[Post]) -> _Prepared | None:
    """Load, decode and OCR-read a batch's images; None when one fails, to be redone and reported in order."""
    start = time.perf_counter()
    try:
        inputs = post_engine_inputs(posts=posts)
        decoded = engine.decode(inputs)
        decode_ms = (time.perf_counter() - start) * 1000
        timings: dict[str, float] = {}
        readings = engine.read(decoded, timings)
    except Exception:  # noqa: BLE001 — the worker's own thread meets the same error and handles it
        return None
    return _Prepared(inputs=inputs, decoded=decoded, decode_ms=decode_ms, readings=readings,
                     read_ms=timings.get("read", 0.0))


def _prepared_only(prepared: _Prepared, *, keys: set[str]) -> _Prepared:
    kept = [i for i, item in enumerate(prepared.inputs) if item.key in keys]
    return _Prepared(inputs=[prepared.inputs[i] for i in kept], decoded=[prepared.decoded[i] for i in kept],
                     decode_ms=prepared.decode_ms, readings=[prepared.readings[i] for i in kept],
                     read_ms=prepared.read_ms)


def _analyze_claimed(*, engine: Engine, batch: _Batch, worker: str) -> None:
    token = batch.token
    policy = policy_active()
    engine_policy = policy_for_engine(policy=policy)
    # Read per batch: a promoted or rolled-back head, or a new label, applies to the next batch.
    slugs = [c.slug for c in engine_policy.categories]
    classifier, version, scoring = scoring_classifier(categories=slugs)
    precedents = precedents_current(categories=slugs)
    prepared = batch.prepared.result() if batch.prepared is not None else None
    # Known content first: PDQ hashes, and posts matching a bank are decided without the models.
    pending = bank_match_batch(token=token, posts=batch.posts, worker=worker)
    if not pending:
        return
    if prepared is not None and len(pending) < len(batch.posts):
        prepared = _prepared_only(prepared, keys={str(p.pk) for p in pending})
    # A bad input fails only its own post; the rest of the batch is analysed again without it.
    while pending:
        try:
            if prepared is not None:
                results = engine.analyze(prepared.inputs, engine_policy, classifier=classifier,
                                         decoded=prepared.decoded, readings=prepared.readings)
                ahead = {"decode": prepared.decode_ms} | ({"read": prepared.read_ms} if prepared.read_ms else {})
                results = [replace(r, timings_ms={**ahead, **r.timings_ms}) for r in results]
            else:
                results = engine.analyze(post_engine_inputs(posts=pending), engine_policy, classifier=classifier)
        except EngineInputError as exc:
            post_attempt_fail(token=token, post_id=exc.key, error=str(exc), worker=worker, permanent=True)
            pending = [p for p in pending if str(p.pk) != exc.key]
            prepared = None
            continue
        except RuntimeError as exc:
            # Torch reports device faults (CUDA errors, out of memory) as RuntimeError: the batch
            # goes back to the queue with the attempt counted, so a poisoned post ends in "failed".
            for post in pending:
                post_attempt_fail(token=token, post_id=post.pk, error=f"{type(exc).__name__}: {exc}",
                                  worker=worker)
            return
        analysis_record_batch(token=token, policy=policy, results=results, worker=worker, classifier=version,
                              scoring=scoring, precedents=precedents)
        return
