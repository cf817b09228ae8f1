"""Model output is untrusted input: clean generated text, scores and boxes before they are stored."""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

# Kept although they are control characters: they are how text says where a line ends.
_KEPT_CONTROLS = {"\n", "\t"}
# Cc: C0/C1 controls (NUL included); Cf: invisible format characters such as bidi overrides,
# which make a reviewer read text in another order than it is stored; Cs: lone surrogates,
# which PostgreSQL and UTF-8 cannot store.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Cs"}
TEXT_LIMIT = 2000
LABEL_LIMIT = 255


class ModelOutputInvalid(ValueError):
    """The engine returned something for a post that cannot be stored as a verdict."""


def model_text_clean(value: object, *, limit: int = TEXT_LIMIT) -> str | None:
    """A generated string without NUL, control or format characters, at most ``limit`` characters."""
    if value is None:
        return None
    text = "".join(ch for ch in str(value)
                   if ch in _KEPT_CONTROLS or unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    text = text.strip()
    return text[:limit].rstrip() if len(text) > limit else text


def model_scores_clean(scores: Mapping[str, Any]) -> dict[str, float]:
    """Scores as floats in [0, 1]; a score that is not a finite number makes the result invalid.

    NaN is not clamped to a value: a verdict from it would be made up, so the post's attempt
    fails with that reason instead (and is retried alone, then ``failed``).
    """
    clean: dict[str, float] = {}
    for slug, value in scores.items():
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ModelOutputInvalid(f"the model returned a non-numeric score for {slug!r}: {value!r}") from exc
        if not math.isfinite(number):
            raise ModelOutputInvalid(f"the model returned a non-finite score for {slug!r}: {number}")
        clean[model_text_clean(slug, limit=LABEL_LIMIT) or "?"] = round(min(max(number, 0.0), 1.0), 6)
    return clean


def model_embedding_clean(values: Sequence[float] | None, *, role: str) -> bytes | None:
    """An embedding as little-endian float32 bytes; a non-finite value makes the result invalid
    (it would rank nothing meaningfully, and pgvector refuses to store it)."""
    if values is None:
        return None
    vector = np.asarray(values, dtype="<f4")
    if not np.isfinite(vector).all():
        raise ModelOutputInvalid(f"the model returned a non-finite {role} embedding")
    return vector.tobytes()


@dataclass(frozen=True)
class BoxLimits:
    per_phrase: int
    per_image: int
    merge_iou: float


def model_boxes_clean(groundings: Sequence[Mapping[str, Any]], *, width: int | None, height: int | None,
                      limits: BoxLimits) -> list[dict[str, Any]]:
    """Boxes clipped to the image, empty and non-finite ones dropped, overlapping boxes of one
    phrase merged, then at most ``per_phrase`` per phrase and ``per_image`` in all, best first."""
    boxes = [b for b in (_box_clean(g, width=width, height=height) for g in groundings) if b is not None]
    boxes.sort(key=lambda b: -b["score"])
    kept: list[dict[str, Any]] = []
    per_phrase: dict[str, int] = {}
    for box in _boxes_merged(boxes, merge_iou=limits.merge_iou):
        if per_phrase.get(box["phrase"], 0) >= limits.per_phrase:
            continue
        per_phrase[box["phrase"]] = per_phrase.get(box["phrase"], 0) + 1
        kept.append(box)
        if len(kept) >= limits.per_image:
            break
    return kept


# Words kept per image: a meme holds a few dozen; a screenshot of a page is not worth more.
MAX_OCR_WORDS = 300


def model_words_clean(words: Sequence[Mapping[str, Any]], *, width: int | None, height: int | None
                      ) -> list[dict[str, Any]]:
    """OCR words in reading order: text cleaned, boxes clipped to the image, empty ones dropped, capped."""
    kept = []
    for word in words[:MAX_OCR_WORDS]:
        box = _box_clean({"phrase": word.get("text"), "box": word.get("box"), "score": word.get("score")},
                         width=width, height=height)
        if box is not None and box["phrase"]:
            kept.append({"text": box["phrase"], "box": box["box"], "score": box["score"]})
    return kept


def _box_clean(grounding: Mapping[str, Any], *, width: int | None, height: int | None) -> dict[str, Any] | None:
    try:
        x0, y0, x1, y1 = (float(v) for v in grounding["box"])
        score = float(grounding["score"])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1, score)):
        return None
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if width is not None and height is not None:
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:  # nothing left inside the image
        return None
    phrase = model_text_clean(grounding.get("phrase"), limit=LABEL_LIMIT) or ""
    return {"phrase": phrase, "box": [round(v, 1) for v in (x0, y0, x1, y1)],
            "score": round(min(max(score, 0.0), 1.0), 6)}


def _boxes_merged(boxes: list[dict[str, Any]], *, merge_iou: float) -> list[dict[str, Any]]:
    """Greedy, best first: a box overlapping an already kept box of its phrase by at least
    ``merge_iou`` widens that box to their union (keeping the better score) instead of adding one."""
    merged: list[dict[str, Any]] = []
    for box in boxes:
        target = next((m for m in merged if m["phrase"] == box["phrase"]
                       and _iou(m["box"], box["box"]) >= merge_iou), None)
        if target is None:
            merged.append({**box, "box": list(box["box"])})
            continue
        a, b = target["box"], box["box"]
        target["box"] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
    return merged


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union
