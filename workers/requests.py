"""One worker step for ad-hoc requests: claim a batch, one engine call per kind, store results."""
from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any, Callable, Sequence

from moderation.models import EngineRequest
from moderation.services.analysis import post_engine_inputs
from moderation.services.requests import request_claim_batch, request_complete, request_fail
from vlm_engine.engine import Engine
from vlm_engine.types import EngineInputError

Kind = EngineRequest.Kind


def requests_drain(*, engine: Callable[[], Engine], batch_size: int, max_batches: int = 64) -> int:
    total = 0
    for _ in range(max_batches):
        token, claimed = request_claim_batch(limit=batch_size)
        if not claimed:
            break
        requests_run(engine=engine(), token=token, requests=claimed)
        total += len(claimed)
    return total


def requests_run(*, engine: Engine, token: uuid.UUID, requests: Sequence[EngineRequest]) -> None:
    for kind in Kind:
        group = [r for r in requests if r.kind == kind]
        while group:
            # A bad input fails only its own request; the rest of the group runs again without it.
            try:
                results = _run_kind(engine, kind, group)
            except EngineInputError as exc:
                bad = [r for r in group if _key(r) == exc.key]
                for request in bad:
                    request_fail(token=token, request_id=request.pk, error=f"{exc.code}: {exc.message}")
                group = [r for r in group if r not in bad]
                continue
            for request, result in zip(group, results):
                request_complete(token=token, request_id=request.pk, result=result, model_version=engine.model_version)
            group = []


def _key(request: EngineRequest) -> str:
    return str(request.post_id) if request.post_id else str(request.pk)


def _run_kind(engine: Engine, kind: str, group: Sequence[EngineRequest]) -> list[Any]:
    if kind == Kind.QUERY:
        return [{"embedding": list(engine.embed_query(r.params["query"]))} for r in group]
    inputs = post_engine_inputs(posts=[r.post for r in group])
    if kind == Kind.QUESTION:
        answers = engine.ask([(i, r.params["question"]) for i, r in zip(inputs, group)])
        return [{"answer": a.answer} for a in answers]
    if kind == Kind.GROUNDING:
        found = engine.ground([(i, r.params["phrases"]) for i, r in zip(inputs, group)])
        return [{"groundings": [asdict(g) for g in boxes]} for boxes in found]
    captions = engine.caption([(i, r.params.get("prompt")) for i, r in zip(inputs, group)])
    return [{"caption": c} for c in captions]
