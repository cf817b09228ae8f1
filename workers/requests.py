"""One worker step for ad-hoc requests: claim a batch, one engine call per kind, store results."""
from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any, Callable, Sequence

from moderation.conf import moderation_settings
from moderation.models import EngineRequest
from moderation.services.model_output import LABEL_LIMIT, BoxLimits, model_boxes_clean, model_text_clean
from moderation.services.analysis import post_engine_inputs
from moderation.services.explanations import unavailable_because, unavailable_marker
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
                _complete(token=token, request=request, result=result, model_version=engine.model_version)
            group = []


def _complete(*, token: uuid.UUID, request: EngineRequest, result: Any, model_version: str) -> None:
    """Store one answer; anything that goes wrong storing it fails that request alone."""
    try:
        request_complete(token=token, request_id=request.pk, result=result,
                         model_version=model_text_clean(model_version, limit=LABEL_LIMIT) or "")
    # Model output is untrusted: no answer of one request may abandon the others of the batch.
    except Exception as exc:  # noqa: BLE001
        request_fail(token=token, request_id=request.pk,
                     error=model_text_clean(f"storing the result failed: {type(exc).__name__}: {exc}") or "")


def _key(request: EngineRequest) -> str:
    return str(request.post_id) if request.post_id else str(request.pk)


# The role each kind of request needs, and the result field it fills.
_ROLE_OF_KIND = {Kind.QUESTION: ("generator", "answer"), Kind.GROUNDING: ("grounder", "groundings"),
                 Kind.CAPTION: ("generator", "caption")}


def _run_kind(engine: Engine, kind: str, group: Sequence[EngineRequest]) -> list[Any]:
    if kind == Kind.QUERY:
        return [{"embedding": list(engine.embed_query(r.params["query"]))} for r in group]
    role, field = _ROLE_OF_KIND[Kind(kind)]
    if engine.roles_real().get(role) is False:
        # Random weights answer with noise: say so instead of presenting it as an answer.
        empty: Any = [] if field == "groundings" else None
        return [{field: empty, "unavailable": unavailable_marker(role)} for _ in group]
    unanswered = engine.questions_unanswered() if kind == Kind.QUESTION else None
    if unanswered is not None:
        # A pure captioner (BLIP captioning, ViT+GPT-2) would caption the question: say it cannot answer.
        return [{"answer": None, "unavailable": unavailable_because(unanswered)} for _ in group]
    inputs = post_engine_inputs(posts=[r.post for r in group])
    if kind == Kind.QUESTION:
        answers = engine.ask([(i, r.params["question"]) for i, r in zip(inputs, group)])
        return [{"answer": model_text_clean(a.answer)} for a in answers]
    if kind == Kind.GROUNDING:
        found = engine.ground([(i, r.params["phrases"]) for i, r in zip(inputs, group)])
        return [{"groundings": _boxes(r, boxes)} for r, boxes in zip(group, found)]
    captions = engine.caption([(i, r.params.get("prompt")) for i, r in zip(inputs, group)])
    return [{"caption": model_text_clean(c)} for c in captions]


def _boxes(request: EngineRequest, boxes: Sequence[Any]) -> list[dict[str, Any]]:
    s, post = moderation_settings, request.post
    return model_boxes_clean([asdict(g) for g in boxes], width=post.image_width, height=post.image_height,
                             limits=BoxLimits(per_phrase=s.MAX_BOXES_PER_PHRASE, per_image=s.MAX_BOXES_PER_IMAGE,
                                              merge_iou=s.BOX_MERGE_IOU))
