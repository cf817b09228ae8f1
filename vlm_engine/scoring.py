"""Zero-shot scoring: batched embeddings, a joint image+text embedding, the embedder's label probabilities.

The embedder says how a category's prompts become its score (`EmbedderRole.category_scores`):
a softmax against the benign prompts for CLIP-like families, its best prompt's own sigmoid for SigLIP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vlm_engine.embedders import EmbedderRole
from vlm_engine.learning.dataset import embeddings_pair, sentences_stack
from vlm_engine.text import TextTable
from vlm_engine.types import Policy

_Embedder = Callable[[list[Any]], np.ndarray]
# Policies change rarely; a handful of versions alive at once (during a rollout) is plenty.
_PROMPT_CACHE_SIZE = 8


class Classifier(Protocol):
    """A learned scorer (the ASIF or kNN precedent vote, or a trained head): (n, C) probabilities, NaN for "no opinion"."""

    @property
    def categories(self) -> Sequence[str]: ...

    def predict(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class PromptTable:
    """Every distinct prompt of a policy, embedded once, and each category's label columns."""

    embeddings: np.ndarray
    columns: dict[str, tuple[list[int], int]]  # slug -> (label columns, how many are the category's)
    text: TextTable | None = None  # the text role's reference texts, when the engine has one


class ZeroShotScorer:
    """Category scores from the embedder: each category's prompts against the policy's benign prompts."""

    def __init__(self, clip: EmbedderRole, *, batch_size: int, text_weight: float) -> None:
        self.clip = clip
        self.batch_size = batch_size
        self.text_weight = text_weight
        self._prompt_cache: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def embed_images(self, images: Sequence[Any | None]) -> list[np.ndarray | None]:
        """Image embeddings in `batch_size` chunks; None (no image) stays None, order is kept."""
        return _embed_present(images, lambda present: self._chunked(present, self.clip.embed_images))

    def embed_texts(self, texts: Sequence[str | None]) -> list[np.ndarray | None]:
        """Text embeddings in `batch_size` chunks; None (no text) stays None, order is kept."""
        return _embed_present(texts, lambda present: self._chunked(present, self.clip.embed_texts))

    def scores(
        self, image_embs: Sequence[np.ndarray | None], text_embs: Sequence[np.ndarray | None], table: PromptTable
    ) -> list[dict[str, float]]:
        """Category slug -> probability, per post, from its joint embedding."""
        joint = np.stack([self._joint(image, text) for image, text in zip(image_embs, text_embs)])
        per_category: dict[str, np.ndarray] = {}
        for slug, (columns, own) in table.columns.items():
            probs = self.clip.label_probs(joint, table.embeddings[columns])
            per_category[slug] = self.clip.category_scores(probs, own)
        return [{slug: float(values[row]) for slug, values in per_category.items()} for row in range(len(joint))]

    def prompt_table(self, policy: Policy) -> PromptTable:
        """The policy's prompt embeddings (cached per policy version) and each category's columns."""
        prompts = tuple(dict.fromkeys(p for c in policy.categories for p in c.prompts + policy.benign_prompts))
        index = {prompt: column for column, prompt in enumerate(prompts)}
        columns = {
            c.slug: ([index[p] for p in c.prompts + policy.benign_prompts], len(c.prompts))
            for c in policy.categories
        }
        return PromptTable(embeddings=self._prompt_embeddings(policy.version, prompts), columns=columns)

    def _chunked(self, items: list[Any], embed: _Embedder) -> np.ndarray:
        size = self.batch_size
        chunks = [embed(items[start : start + size]) for start in range(0, len(items), size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.clip.embedding_dim), np.float32)

    def _joint(self, image_emb: np.ndarray | None, text_emb: np.ndarray | None) -> np.ndarray:
        if image_emb is None or text_emb is None:
            only = image_emb if image_emb is not None else text_emb
            assert only is not None, "the engine rejects posts with neither image nor text"
            return only
        weight = self.text_weight
        mixed = (1.0 - weight) * image_emb + weight * text_emb
        return mixed / max(float(np.linalg.norm(mixed)), 1e-12)

    def _prompt_embeddings(self, version: str, prompts: tuple[str, ...]) -> np.ndarray:
        """Embed a policy's prompts once per (version, prompts), not once per batch."""
        key = (version, prompts)
        if key not in self._prompt_cache:
            if len(self._prompt_cache) >= _PROMPT_CACHE_SIZE:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))  # oldest first
            self._prompt_cache[key] = self._chunked(list(prompts), self.clip.embed_texts)
        return self._prompt_cache[key]


def classifier_scores_apply(
    scores: list[dict[str, float]],
    image_embs: Sequence[np.ndarray | None],
    text_embs: Sequence[np.ndarray | None],
    classifier: Classifier | None,
    sentence_embs: Sequence[np.ndarray | None] = (),
) -> list[bool]:
    """Replace the zero-shot scores of the categories `classifier` covers, in place.

    `sentence_embs` are the text role's embeddings (none without a text role; None for a post
    without text): the classifier takes them as a third input. Its NaN entries keep the
    zero-shot score of that post and category; a classifier with a `zero_shot_share` (the
    precedent votes) leaves that share of the score to the zero-shot one. Returns, per post,
    whether the classifier gave any of its scores (all False without a classifier).
    """
    if classifier is None or not scores:
        return [False] * len(scores)
    image, text = embeddings_pair(image_embs, text_embs)
    probs = classifier.predict(image, text, sentences_stack(sentence_embs))
    share = float(getattr(classifier, "zero_shot_share", 0.0))
    scored = [False] * len(scores)
    for column, slug in enumerate(classifier.categories):
        for row, value in enumerate(probs[:, column]):
            if slug in scores[row] and np.isfinite(value):
                scores[row][slug] = share * scores[row][slug] + (1.0 - share) * float(value)
                scored[row] = True
    return scored


def _embed_present(items: Sequence[Any | None], embed: _Embedder) -> list[np.ndarray | None]:
    """Embed the non-None items in one go; None stays None, order is kept."""
    present = [item for item in items if item is not None]
    rows = iter(embed(present))
    return [None if item is None else next(rows) for item in items]
