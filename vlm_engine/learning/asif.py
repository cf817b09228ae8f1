"""ASIF-style precedents: relative representations over labelled anchor posts, then a similarity vote."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from vlm_engine.learning.dataset import LabelledEmbeddings, sentence_similarities, unit_rows

NOT_VIOLATING = "not_violating"
# The workers' precedent votes leave this share of a post's score to its zero-shot score: on our
# drawn memes (bench.quality) the vote of 30 decisions alone scores below zero-shot with the
# policy's exemplars, and the two averaged score above either.
PRECEDENT_ZERO_SHOT_SHARE = 0.5


@dataclass(frozen=True)
class Precedent:
    """One labelled anchor near a query: its post id, its label, and how close it is.

    `similarity` is the mean of the image and text cosine similarities (mixed with the sentence
    one at the classifier's `sentence_weight`, when the query has a sentence embedding); `weight` is the share
    of the query's relative representation the anchor holds (0 when it is outside both top-k).
    """

    key: str
    label: str
    similarity: float
    weight: float


class AsifClassifier:
    """Category probabilities from a query's relative representation over labelled anchors.

    In the manner of ASIF (Norelli et al., 2023): a query is described by its cosine
    similarities to the anchors, separately in the image and the text space (and the sentence
    space, when anchors and query have sentence embeddings); each keeps its top-k, clipped at 0
    and raised to `exponent` (sharpening towards the closest), and is normalised to sum 1. The
    image and text ones are averaged, and the sentence one takes `sentence_weight` of the
    mix, into one weight per anchor; a category's score is the weighted share of violating
    anchors. No training: adding an anchor (a new reviewer decision) changes the next
    prediction. A NaN label means "not decided for this category": such anchors do not vote on it.
    """

    def __init__(
        self,
        examples: LabelledEmbeddings,
        *,
        categories: Sequence[str],
        k: int = 15,
        exponent: float = 1.0,
        min_labels: int = 10,
        sentence_weight: float = 0.5,
        zero_shot_share: float = 0.0,
    ) -> None:
        """
        Args:
            zero_shot_share: the share of a post's score the engine leaves to its zero-shot
                score where this vote has an opinion (`classifier_scores_apply`).

        Raises:
            ValueError: k < 1, exponent <= 0, sentence_weight or zero_shot_share outside
                [0, 1], or `categories` does not match the labels' columns.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not exponent > 0:
            raise ValueError(f"exponent must be positive, got {exponent}")
        shares_check(sentence_weight=sentence_weight, zero_shot_share=zero_shot_share)
        if len(categories) != examples.labels.shape[1]:
            raise ValueError(f"{len(categories)} categories for {examples.labels.shape[1]} label columns")
        self.categories = tuple(categories)
        self.k = k
        self.exponent = float(exponent)
        self.min_labels = min_labels
        self.sentence_weight = float(sentence_weight)
        self.zero_shot_share = float(zero_shot_share)
        self.keys = examples.keys
        self._rows = {key: row for row, key in enumerate(examples.keys)}
        self._image = unit_rows(examples.image)
        self._text = unit_rows(examples.text)
        self._sentence = examples.sentence
        self._labels = examples.labels.astype(np.float64)

    def predict(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None = None) -> np.ndarray:
        """(n, C) float64: per category, the weighted share of violating anchors.

        A category with fewer than `min_labels` labelled anchors gives NaN ("no opinion"); a
        query whose top-k similarities are all <= 0 gives the category's base rate. A query
        without a sentence embedding (None, or a zero row) is weighed on the CLIP views alone.
        """
        views = self._views(image, text, sentence)
        columns = [self._vote(views, self._labels[:, c]) for c in range(len(self.categories))]
        return np.stack(columns, axis=1) if columns else np.zeros((len(image), 0))

    def nearest(
        self,
        image: np.ndarray,
        text: np.ndarray,
        *,
        count: int,
        allowed: Collection[str] | None = None,
        sentence: np.ndarray | None = None,
    ) -> list[list[Precedent]]:
        """Per query, up to `count` anchors (only those whose key is in `allowed`, when given),
        heaviest in the vote first, ties by similarity; anchors with no weight are left out."""
        views = self._views(image, text, sentence)
        weights = self._weights(views)
        similarity = self._mixed(views, (views.image + views.text) / 2, views.sentence)
        keep = np.ones(len(self.keys), dtype=bool)
        if allowed is not None:
            keep[:] = False
            keep[[self._rows[key] for key in allowed if key in self._rows]] = True
        return [self._ranked(weights[row], similarity[row], keep, count) for row in range(len(weights))]

    def _ranked(self, weights: np.ndarray, similarity: np.ndarray, keep: np.ndarray, count: int) -> list[Precedent]:
        order = np.lexsort((-similarity, -weights))  # last key sorts first: weight, then similarity
        chosen = [int(i) for i in order if keep[i] and weights[i] > 0][:count]
        return [Precedent(key=self.keys[i], label=self._label(i), similarity=round(float(similarity[i]), 6),
                          weight=round(float(weights[i]), 6)) for i in chosen]

    def _label(self, row: int) -> str:
        violating = np.flatnonzero(self._labels[row] == 1.0)
        return self.categories[int(violating[0])] if len(violating) else NOT_VIOLATING

    def _views(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None) -> _Views:
        sentence_sims, has_sentence = sentence_similarities(self._sentence, sentence, len(image))
        return _Views(image=unit_rows(image) @ self._image.T, text=unit_rows(text) @ self._text.T,
                      sentence=sentence_sims, share=np.where(has_sentence, self.sentence_weight, 0.0)[:, None])

    def _mixed(self, views: _Views, clip: np.ndarray, sentence: np.ndarray) -> np.ndarray:
        """Per query row: the CLIP part, and the sentence part at the row's share (0 without one)."""
        if sentence.shape[1] == 0:
            return clip
        mixed: np.ndarray = (1.0 - views.share) * clip + views.share * sentence
        return mixed

    def _weights(self, views: _Views) -> np.ndarray:
        clip = (self._relative(views.image) + self._relative(views.text)) / 2
        sentence = self._relative(views.sentence) if views.sentence.shape[1] else views.sentence
        return self._mixed(views, clip, sentence)

    def _relative(self, sims: np.ndarray) -> np.ndarray:
        """Top-k similarities per row, clipped at 0, to the exponent, normalised to sum 1 (or all 0)."""
        k = min(self.k, sims.shape[1])
        kept = np.zeros_like(sims)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        np.put_along_axis(kept, top, np.maximum(np.take_along_axis(sims, top, axis=1), 0.0), axis=1)
        peak = kept.max(axis=1, keepdims=True)
        powered = np.divide(kept, peak, out=np.zeros_like(kept), where=peak > 0) ** self.exponent
        total = powered.sum(axis=1, keepdims=True)
        relative: np.ndarray = np.divide(powered, total, out=np.zeros_like(powered), where=total > 0)
        return relative

    def _vote(self, views: _Views, labels: np.ndarray) -> np.ndarray:
        labelled = np.flatnonzero(np.isfinite(labels))
        if len(labelled) < max(self.min_labels, 1):
            return np.full(len(views.image), np.nan)
        if len(labelled) < len(labels):
            views, labels = views.columns(labelled), labels[labelled]
        weights = self._weights(views)
        total = weights.sum(axis=1)
        share = np.divide(weights @ labels, total, out=np.zeros_like(total), where=total > 0)
        votes: np.ndarray = np.where(total > 0, share, float(labels.mean()))
        return votes


def shares_check(**shares: float) -> None:
    """Raise ValueError unless every named share is within [0, 1]."""
    for name, value in shares.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {value}")


@dataclass(frozen=True)
class _Views:
    """A batch of queries' similarities to the anchors, per view, and each query's sentence share."""

    image: np.ndarray  # (n, m)
    text: np.ndarray  # (n, m)
    sentence: np.ndarray  # (n, m), or (n, 0) when the anchors have no sentence embeddings
    share: np.ndarray  # (n, 1): sentence_weight, or 0 for a query without a sentence embedding

    def columns(self, anchors: np.ndarray) -> _Views:
        sentence = self.sentence[:, anchors] if self.sentence.shape[1] else self.sentence
        return _Views(image=self.image[:, anchors], text=self.text[:, anchors], sentence=sentence, share=self.share)
