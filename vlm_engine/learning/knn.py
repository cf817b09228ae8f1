"""Nearest labelled examples: a similarity-weighted vote, so a new reviewer label counts at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlm_engine.learning.asif import shares_check
from vlm_engine.learning.dataset import LabelledEmbeddings, joint_embeddings, sentence_similarities

# Similarities below this still vote, barely: the weights stay positive, so every vote is defined.
_MIN_WEIGHT = 1e-6


class KnnClassifier:
    """Category probabilities from the k labelled examples nearest in the joint embedding space.

    No training: build one from the current labels and it reflects them. A label that is
    NaN means "not decided for this category"; such examples do not vote on it. With sentence
    embeddings on both sides, the similarity mixes in the sentence one at `sentence_weight`.
    """

    def __init__(
        self,
        examples: LabelledEmbeddings,
        *,
        categories: Sequence[str],
        k: int = 15,
        min_labels: int = 10,
        sentence_weight: float = 0.5,
        zero_shot_share: float = 0.0,
    ) -> None:
        """
        Args:
            zero_shot_share: as for `AsifClassifier`.

        Raises:
            ValueError: k < 1, sentence_weight or zero_shot_share outside [0, 1], or
                `categories` does not match the labels' columns.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        shares_check(sentence_weight=sentence_weight, zero_shot_share=zero_shot_share)
        if len(categories) != examples.labels.shape[1]:
            raise ValueError(f"{len(categories)} categories for {examples.labels.shape[1]} label columns")
        self.categories = tuple(categories)
        self.k = k
        self.min_labels = min_labels
        self.sentence_weight = float(sentence_weight)
        self.zero_shot_share = float(zero_shot_share)
        self._joint = joint_embeddings(examples.image, examples.text)
        self._sentence = examples.sentence
        self._labels = examples.labels.astype(np.float64)

    def predict(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None = None) -> np.ndarray:
        """(n, C) float64: per category, the weighted share of violating votes among the k nearest.

        The weights are the cosine similarities (floored at a tiny positive value); a
        category with fewer than `min_labels` labelled examples gives NaN: "no opinion". A
        query without a sentence embedding (None, or a zero row) is compared on the joint CLIP one alone.
        """
        similarities = joint_embeddings(image, text).astype(np.float64) @ self._joint.astype(np.float64).T
        sentence_sims, has_sentence = sentence_similarities(self._sentence, sentence, len(image))
        if has_sentence.any():
            share = np.where(has_sentence, self.sentence_weight, 0.0)[:, None]
            similarities = (1.0 - share) * similarities + share * sentence_sims
        weights = np.maximum(similarities, _MIN_WEIGHT)
        columns = [self._vote(weights, self._labels[:, column]) for column in range(len(self.categories))]
        return np.stack(columns, axis=1) if columns else np.zeros((len(image), 0))

    def _vote(self, weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
        labelled = np.flatnonzero(np.isfinite(labels))
        if len(labelled) < max(self.min_labels, 1):
            return np.full(len(weights), np.nan)
        if len(labelled) < len(labels):
            weights, labels = weights[:, labelled], labels[labelled]
        k = min(self.k, len(labelled))
        nearest = np.argpartition(-weights, k - 1, axis=1)[:, :k]
        chosen = np.take_along_axis(weights, nearest, axis=1)
        votes: np.ndarray = (chosen * labels[nearest]).sum(axis=1) / chosen.sum(axis=1)
        return votes
