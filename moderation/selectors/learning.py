"""Reads for learning: the labelled set built from reviewers' standing decisions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from moderation.models import Analysis, ModelVersion, ReviewDecision
from moderation.selectors.posts import clip_version, text_role_version

Verdict = ReviewDecision.Verdict
LABEL_VERDICTS = (Verdict.VIOLATING, Verdict.NOT_VIOLATING)


@dataclass(frozen=True)
class LabelledRow:
    post_id: str
    category: str | None  # None: not violating
    image: bytes | None
    text: bytes | None
    sentence: bytes | None  # None: no text role's embedding, or one of another text role than the current one


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


def labelled_rows(*, clip: str, text_role: str | None = None) -> list[LabelledRow]:
    """Labels joined with the embeddings of the analysis each reviewer actually saw.

    Only analyses by ``clip`` count: embeddings of different CLIPs are not comparable. Sentence
    embeddings are kept only from analyses by ``text_role`` (the one the workers run now), for
    the same reason; the others' posts still count through their CLIP embeddings.
    """
    return [LabelledRow(post_id=str(d.post_id), category=d.category if d.verdict == Verdict.VIOLATING else None,
                        image=d.analysis.image_embedding, text=d.analysis.text_embedding,
                        sentence=d.analysis.sentence_embedding if text_role is not None
                        and text_role_version(d.analysis.model_version) == text_role else None)
            for d in standing_decisions()
            if clip_version(d.analysis.model_version) == clip
            and (d.analysis.image_embedding is not None or d.analysis.text_embedding is not None)]


def clip_version_current() -> str | None:
    """The CLIP that judged the newest analysis: the one the workers run now."""
    latest = _model_version_latest()
    return clip_version(latest) if latest else None


def text_role_version_current() -> str | None:
    """The text role of the newest analysis (None: the workers run without one)."""
    latest = _model_version_latest()
    return text_role_version(latest) if latest else None


def _model_version_latest() -> str | None:
    latest: str | None = Analysis.objects.order_by("-created_at").values_list("model_version", flat=True).first()
    return latest


def embedding_from_bytes(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype="<f4")


def model_version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()


# (label, path under "macro", True when higher is better)
COMPARED_METRICS = (("AUROC", ("auroc",), True), ("F1 at the review threshold", ("review", "f1"), True),
                    ("ECE (calibration error)", ("ece",), False))


@dataclass(frozen=True)
class MetricRow:
    label: str
    new: float | None
    current: float | None
    worse: bool


@dataclass(frozen=True)
class VersionComparison:
    """What a lead sees before switching heads: the head to be used next beside the one in use now."""

    new_label: str
    current_label: str
    split_note: str
    rows: tuple[MetricRow, ...]

    @property
    def worse(self) -> tuple[MetricRow, ...]:
        return tuple(row for row in self.rows if row.worse)


def model_version_comparison(*, new: ModelVersion | None, current: ModelVersion | None) -> VersionComparison:
    """``new`` (None: zero-shot scoring) against ``current`` (None: zero-shot), on the same
    held-out split when one of them was evaluated against the other, else each on its own."""
    new_metrics, current_metrics, note = _paired_metrics(new, current)
    rows = tuple(_metric_row(label, path, higher, new_metrics, current_metrics) for label, path, higher in COMPARED_METRICS)
    return VersionComparison(new_label=_version_label(new), current_label=_version_label(current), split_note=note,
                             rows=rows)


def _version_label(version: ModelVersion | None) -> str:
    return f"v{version.version}" if version is not None else "zero-shot scoring"


def _source(version: ModelVersion | None) -> str:
    return f"v{version.version}" if version is not None else "zero_shot"


def _paired_metrics(new: ModelVersion | None, current: ModelVersion | None) -> tuple[dict, dict, str]:
    if current is not None and current.baseline_metrics.get("source") == _source(new):
        return current.baseline_metrics, current.metrics, f"both on {_version_label(current)}'s held-out split"
    if new is not None and new.baseline_metrics.get("source") == _source(current):
        return new.metrics, new.baseline_metrics, f"both on {_version_label(new)}'s held-out split"
    return ((new.metrics if new else {}), (current.metrics if current else {}),
            "each on its own held-out split: not directly comparable")


def _macro_value(metrics: dict, path: tuple[str, ...]) -> float | None:
    value: object = metrics.get("macro") or {}
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _metric_row(label: str, path: tuple[str, ...], higher_better: bool, new: dict, current: dict) -> MetricRow:
    a, b = _macro_value(new, path), _macro_value(current, path)
    worse = a is not None and b is not None and (a < b if higher_better else a > b)
    return MetricRow(label=label, new=a, current=b, worse=worse)
