"""Evaluation of category probabilities against labels: AUROC, threshold metrics, calibration error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ECE_BINS = 10
# The thresholds of a category, in the order `thresholds` maps them: (review, remove).
THRESHOLD_NAMES = ("review", "remove")
_THRESHOLD_METRICS = ("accuracy", "f1", "precision", "recall")


def metrics_evaluate(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    categories: Sequence[str],
    thresholds: Mapping[str, tuple[float, float]],
) -> dict[str, Any]:
    """Per-category and macro-averaged metrics of `probs` (n, C) against 0/1 `labels` (n, C).

    Per category: `auroc` (None with a single class), `ece` (10 equal-width bins over the
    probability, weighted by bin size), `support` (positives) and `n`, and under "review" /
    "remove" the `threshold` and the `accuracy`, `f1`, `precision`, `recall` of
    "probability >= threshold" (0.0 where undefined, as scikit-learn's zero_division=0).
    "macro" averages each number over the categories that have it (None when none has).
    Only dicts, str, int, float and None: JSON-serialisable as is.

    Args:
        thresholds: slug -> (review threshold, remove threshold), for every category.

    Raises:
        ValueError: shapes disagree, a probability is not finite, or a threshold is missing.
    """
    probs, labels = _checked(probs, labels, categories, thresholds)
    per_category = {
        slug: _category_metrics(probs[:, column], labels[:, column], thresholds[slug])
        for column, slug in enumerate(categories)
    }
    return {"categories": per_category, "macro": _macro(list(per_category.values()))}


def auroc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None unless both classes occur."""
    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(probs.astype(np.float64))
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS) -> float | None:
    """Sum over equal-width probability bins of |bin| / n * |positive rate - mean probability|."""
    if len(probs) == 0:
        return None
    which = np.minimum((probs * bins).astype(np.int64), bins - 1)
    error = 0.0
    for index in np.unique(which):
        members = which == index
        error += float(members.sum()) * abs(float(labels[members].mean()) - float(probs[members].mean()))
    return error / len(probs)


def _checked(
    probs: np.ndarray, labels: np.ndarray, categories: Sequence[str], thresholds: Mapping[str, tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if probs.shape != labels.shape or probs.ndim != 2 or probs.shape[1] != len(categories):
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must both be (n, {len(categories)})")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities must be finite")
    missing = [slug for slug in categories if slug not in thresholds]
    if missing:
        raise ValueError(f"no thresholds for {', '.join(missing)}")
    return probs, labels


def _category_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: tuple[float, float]) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "auroc": auroc(probs, labels),
        "ece": expected_calibration_error(probs, labels),
        "support": int((labels > 0.5).sum()),
        "n": len(labels),
    }
    for name, threshold in zip(THRESHOLD_NAMES, thresholds):
        metrics[name] = {"threshold": float(threshold), **_at_threshold(probs >= threshold, labels > 0.5)}
    return metrics


def _at_threshold(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float | None]:
    if len(actual) == 0:
        return dict.fromkeys(_THRESHOLD_METRICS)
    true_pos = float((predicted & actual).sum())
    precision = true_pos / float(predicted.sum()) if predicted.any() else 0.0
    recall = true_pos / float(actual.sum()) if actual.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy = float((predicted == actual).mean())
    return {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}


def _macro(per_category: list[dict[str, Any]]) -> dict[str, Any]:
    macro: dict[str, Any] = {
        name: _mean([metrics[name] for metrics in per_category]) for name in ("auroc", "ece")
    }
    macro["support"] = sum(metrics["support"] for metrics in per_category)
    for name in THRESHOLD_NAMES:
        macro[name] = {
            metric: _mean([metrics[name][metric] for metrics in per_category]) for metric in _THRESHOLD_METRICS
        }
    return macro


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(sum(present) / len(present)) if present else None


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start of each run of equal values, and the mean rank of that run.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks
