"""The engine: analyses a batch of posts against a policy, returning plain-value results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlm_engine.clip import ClipRole
from vlm_engine.config import EngineConfig
from vlm_engine.imaging import ImageRejected, image_decode
from vlm_engine.types import Analysis, EngineInputError, Policy, PostInput

_Embedder = Callable[[list[Any]], np.ndarray]
# Policies change rarely; a handful of versions alive at once (during a rollout) is plenty.
_PROMPT_CACHE_SIZE = 8


@dataclass(frozen=True)
class _PromptTable:
    """Every distinct prompt of a policy, embedded once, and each category's label columns."""

    embeddings: np.ndarray
    columns: dict[str, tuple[list[int], int]]  # slug -> (label columns, how many are the category's)


class Engine:
    """Scores posts with CLIP: zero-shot policy prompts against a joint image+text embedding."""

    def __init__(self, config: EngineConfig, clip: ClipRole) -> None:
        self.config = config
        self.clip = clip
        self.model_version = clip.version
        self._prompt_cache: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    @classmethod
    def from_config(cls, config: EngineConfig) -> Engine:
        """Load the checkpoints named by `config`.

        Raises:
            OSError: a checkpoint cannot be found or read.
        """
        return cls(config, ClipRole.load(config.clip, device=config.device, dtype=config.dtype))

    def analyze(self, posts: Sequence[PostInput], policy: Policy) -> list[Analysis]:
        """Analyse a batch of posts: one image forward and one text forward per `batch_size` chunk.

        Args:
            posts: the batch; results come back in the same order.
            policy: the categories to score.

        Returns:
            One Analysis per post.

        Raises:
            EngineInputError: a post's image cannot be decoded, or the post is empty;
                `.key` names it so the caller can retry the rest without it.
        """
        if not posts:
            return []
        timings: dict[str, float] = {}
        with _timed(timings, "decode"):
            images = [self._decode(post) for post in posts]
        with _timed(timings, "embed"):
            image_embs = self._embed_present(images, self._embed_images)
            text_embs = self._embed_present([post.text.strip() or None for post in posts], self._embed_texts)
            table = self._prompt_table(policy)
        with _timed(timings, "score"):
            scores = self._scores(image_embs, text_embs, table)
        return [
            Analysis(
                key=post.key,
                scores=post_scores,
                image_embedding=_as_tuple(image_emb),
                text_embedding=_as_tuple(text_emb),
                model_version=self.model_version,
                timings_ms=dict(timings),
            )
            for post, post_scores, image_emb, text_emb in zip(posts, scores, image_embs, text_embs)
        ]

    def embed_query(self, text: str) -> tuple[float, ...]:
        """L2-normalised CLIP text embedding of a search query, comparable to image embeddings."""
        return tuple(float(value) for value in self.clip.embed_texts([text])[0])

    def _decode(self, post: PostInput) -> Image.Image | None:
        if post.image is None:
            if not post.text.strip():
                raise EngineInputError(post.key, "post has neither an image nor text", code="input_empty")
            return None
        # Twice the model's input side: JPEG draft decoding stays fast without hurting the crop.
        side = 2 * self.clip.image_size
        try:
            return image_decode(post.image, draft_size=(side, side)).image
        except ImageRejected as err:
            raise EngineInputError(post.key, err.message, code=err.code) from err

    def _embed_present(self, items: Sequence[object | None], embed: _Embedder) -> list[np.ndarray | None]:
        """Embed the non-None items in batches; None stays None, order is kept."""
        present = [item for item in items if item is not None]
        rows = iter(embed(present))
        return [None if item is None else next(rows) for item in items]

    def _embed_images(self, images: list[Any]) -> np.ndarray:
        return self._chunked(images, self.clip.embed_images)

    def _embed_texts(self, texts: list[Any]) -> np.ndarray:
        return self._chunked(texts, self.clip.embed_texts)

    def _chunked(self, items: list[Any], embed: _Embedder) -> np.ndarray:
        size = self.config.batch_size
        chunks = [embed(items[start : start + size]) for start in range(0, len(items), size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.clip.embedding_dim), np.float32)

    def _scores(
        self,
        image_embs: list[np.ndarray | None],
        text_embs: list[np.ndarray | None],
        table: _PromptTable,
    ) -> list[dict[str, float]]:
        joint = np.stack([self._joint(image, text) for image, text in zip(image_embs, text_embs)])
        per_category: dict[str, np.ndarray] = {}
        for slug, (columns, own) in table.columns.items():
            probs = self.clip.label_probs(joint, table.embeddings[columns])
            per_category[slug] = probs[:, :own].sum(axis=-1)
        return [{slug: float(values[row]) for slug, values in per_category.items()} for row in range(len(joint))]

    def _joint(self, image_emb: np.ndarray | None, text_emb: np.ndarray | None) -> np.ndarray:
        if image_emb is None or text_emb is None:
            only = image_emb if image_emb is not None else text_emb
            assert only is not None, "_decode rejects posts with neither image nor text"
            return only
        weight = self.config.text_weight
        mixed = (1.0 - weight) * image_emb + weight * text_emb
        return mixed / max(float(np.linalg.norm(mixed)), 1e-12)

    def _prompt_table(self, policy: Policy) -> _PromptTable:
        prompts = tuple(dict.fromkeys(p for c in policy.categories for p in c.prompts + policy.benign_prompts))
        index = {prompt: column for column, prompt in enumerate(prompts)}
        columns = {
            c.slug: ([index[p] for p in c.prompts + policy.benign_prompts], len(c.prompts))
            for c in policy.categories
        }
        return _PromptTable(embeddings=self._prompt_embeddings(policy.version, prompts), columns=columns)

    def _prompt_embeddings(self, version: str, prompts: tuple[str, ...]) -> np.ndarray:
        """Embed a policy's prompts once per (version, prompts), not once per batch."""
        key = (version, prompts)
        if key not in self._prompt_cache:
            if len(self._prompt_cache) >= _PROMPT_CACHE_SIZE:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))  # oldest first
            self._prompt_cache[key] = self._embed_texts(list(prompts))
        return self._prompt_cache[key]


def _as_tuple(embedding: np.ndarray | None) -> tuple[float, ...] | None:
    return None if embedding is None else tuple(float(value) for value in embedding)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = round((time.perf_counter() - start) * 1000.0, 3)
