"""Temperature scaling: one temperature per category, fitted on the validation split by minimising NLL."""

from __future__ import annotations

import math

import numpy as np

# Temperatures are searched within [1/100, 100]: wide enough for any sane head, and never 0 or infinite.
_LOG_INVERSE_BOUNDS = (-math.log(100.0), math.log(100.0))
_BISECTIONS = 60


def temperatures_fit(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-category temperatures T minimising the BCE of sigmoid(logit / T) against 0/1 labels.

    A category whose validation labels hold a single class (or none) keeps T = 1: its
    NLL would be minimised by an extreme temperature that nothing supports.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return np.array([_temperature(logits[:, column], labels[:, column]) for column in range(logits.shape[1])])


def probabilities_calibrated(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """sigmoid(logit / T) per category, in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / np.asarray(temperatures, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * scaled))  # the sigmoid, without overflow for large |logit|


def _temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    positives = int((labels > 0.5).sum())
    if positives == 0 or positives == len(labels):
        return 1.0
    # The NLL is convex in a = 1/T, so its derivative is increasing: bisect for its zero (in log a).
    low, high = _LOG_INVERSE_BOUNDS
    if _nll_slope(math.exp(low), logits, labels) >= 0:
        return 1.0 / math.exp(low)
    if _nll_slope(math.exp(high), logits, labels) <= 0:
        return 1.0 / math.exp(high)
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if _nll_slope(math.exp(middle), logits, labels) > 0:
            high = middle
        else:
            low = middle
    return 1.0 / math.exp((low + high) / 2)


def _nll_slope(inverse_temperature: float, logits: np.ndarray, labels: np.ndarray) -> float:
    """d NLL / d a at a = 1/T: sum of (sigmoid(a * z) - y) * z."""
    probs = probabilities_calibrated(inverse_temperature * logits, np.ones(1))
    return float(((probs - labels) * logits).sum())
