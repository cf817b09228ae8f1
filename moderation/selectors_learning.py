"""Reads for learning: the labelled set built from reviewers' standing decisions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from moderation.models import Analysis, ModelVersion, ReviewDecision
from moderation.selectors import clip_version

Verdict = ReviewDecision.Verdict
LABEL_VERDICTS = (Verdict.VIOLATING, Verdict.NOT_VIOLATING)


@dataclass(frozen=True)
class LabelledRow:
    post_id: str
    category: str | None  # None: not violating
    image: bytes | None
    text: bytes | None


def standing_decisions() -> Iterator[ReviewDecision]:
    """Each reviewed post's standing decision (latest, not an undo, not undone); escalations are
    not labels, so a post whose standing decision is an escalation is left out."""
    rows = (ReviewDecision.objects.filter(undone_by__isnull=True).exclude(verdict=Verdict.UNDO)
            .select_related("analysis", "post").order_by("post_id", "-created_at", "-id"))
    seen: set[object] = set()
    for decision in rows.iterator(chunk_size=2000):
        if decision.post_id in seen:
            continue
        seen.add(decision.post_id)
        if decision.verdict in LABEL_VERDICTS and decision.analysis is not None:
            yield decision


def labelled_rows(*, clip: str) -> list[LabelledRow]:
    """Labels joined with the embeddings of the analysis each reviewer actually saw.

    Only analyses by ``clip`` count: embeddings of different CLIPs are not comparable.
    """
    return [LabelledRow(post_id=str(d.post_id), category=d.category if d.verdict == Verdict.VIOLATING else None,
                        image=d.analysis.image_embedding, text=d.analysis.text_embedding)
            for d in standing_decisions()
            if clip_version(d.analysis.model_version) == clip
            and (d.analysis.image_embedding is not None or d.analysis.text_embedding is not None)]


def clip_version_current() -> str | None:
    """The CLIP that judged the newest analysis: the one the workers run now."""
    latest = Analysis.objects.order_by("-created_at").values_list("model_version", flat=True).first()
    return clip_version(latest) if latest else None


def embedding_from_bytes(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype="<f4")


def model_version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
