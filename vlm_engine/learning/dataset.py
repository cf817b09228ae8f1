"""Labelled embeddings for learning: the dataset type, the split by post id, and its snapshot digest."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Keys hash to a point in [0, 1); the split cuts that interval, so a key's split never depends on others.
_HASH_SPAN = float(2**64)


@dataclass(frozen=True)
class LabelledEmbeddings:
    """Reviewed posts as embeddings and labels, row per post (plain numpy, no torch).

    `image` and `text` are (n, d) float32 L2-normalised CLIP embeddings; a post without an
    image has its text embedding in `image`, a post without text its image embedding in
    `text` (see `embeddings_pair`). `labels` is (n, C) float32, 1 = violating in that
    category. `keys` are the post ids, for traceability and the split.

    `sentence` is (n, s) float32: the text role's (MiniLM) embedding of each post's text and
    the text read from its image, a third view beside the two CLIP ones; None when no post has
    one (the text role is off). A post without one (no text, or analysed before they were
    stored) has a zero row: it is then neither near nor far on that view (`sentences_stack`).

    Raises:
        ValueError: the arrays disagree on n or d, or are not two-dimensional.
    """

    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    keys: tuple[str, ...]
    sentence: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 2 or self.text.ndim != 2 or self.labels.ndim != 2:
            raise ValueError("image, text and labels must be two-dimensional arrays")
        if self.image.shape != self.text.shape:
            raise ValueError(f"image {self.image.shape} and text {self.text.shape} embeddings differ in shape")
        rows = {len(self.image), len(self.labels), len(self.keys)}
        if len(rows) != 1:
            raise ValueError(f"image, labels and keys disagree on the number of posts: {sorted(rows)}")
        if self.sentence is not None and (self.sentence.ndim != 2 or len(self.sentence) != len(self.image)):
            raise ValueError(f"sentence embeddings {self.sentence.shape} do not give one row per post")

    @property
    def dim(self) -> int:
        """The embedding dimension d."""
        return int(self.image.shape[1])

    def take(self, rows: Sequence[int]) -> LabelledEmbeddings:
        """The posts at `rows`, in that order (e.g. one side of `split_by_key`)."""
        index = np.asarray(rows, dtype=np.int64)
        return LabelledEmbeddings(
            image=self.image[index],
            text=self.text[index],
            labels=self.labels[index],
            keys=tuple(self.keys[row] for row in index),
            sentence=None if self.sentence is None else self.sentence[index],
        )


def embeddings_pair(
    image_embs: Sequence[np.ndarray | None], text_embs: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-post embeddings into (n, d) float32 matrices, a missing side taking the other's.

    Raises:
        ValueError: a post has neither embedding, or the lists differ in length or is empty.
    """
    if len(image_embs) != len(text_embs) or not image_embs:
        raise ValueError("need one image and one text entry per post, and at least one post")
    rows = [_pair_row(image, text) for image, text in zip(image_embs, text_embs)]
    image = np.stack([pair[0] for pair in rows]).astype(np.float32, copy=False)
    text = np.stack([pair[1] for pair in rows]).astype(np.float32, copy=False)
    return image, text


def _pair_row(image: np.ndarray | None, text: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if image is None:
        if text is None:
            raise ValueError("a post needs an image or a text embedding")
        return text, text
    return image, (image if text is None else text)


def sentences_stack(embeddings: Sequence[np.ndarray | None], *, dim: int | None = None) -> np.ndarray | None:
    """Stack per-post sentence embeddings into (n, s) float32, a missing one (or one of another
    size than `dim`, default: the first present one's) as a zero row; None when none is present."""
    present = [row for row in embeddings if row is not None]
    if not present:
        return None
    size = dim if dim is not None else len(present[0])
    rows = [row if row is not None and len(row) == size else np.zeros(size, np.float32) for row in embeddings]
    return np.stack(rows).astype(np.float32, copy=False)


def sentence_similarities(
    anchors: np.ndarray | None, queries: np.ndarray | None, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """(count, m) cosine similarities of the queries' sentence embeddings to the anchors', and per
    query whether it has one to compare (a zero row, or a size other than the anchors', has not).

    Without anchors' or queries' sentence embeddings every query has none: the similarities are zeros.
    """
    if anchors is None or queries is None or queries.ndim != 2 or queries.shape[1] != anchors.shape[1]:
        return np.zeros((count, 0 if anchors is None else len(anchors))), np.zeros(count, dtype=bool)
    unit_anchors, unit_queries = unit_rows(anchors), unit_rows(queries)
    present: np.ndarray = np.linalg.norm(queries.astype(np.float64), axis=1) > 0
    similarities: np.ndarray = unit_queries @ unit_anchors.T
    return similarities, present


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm, in float64 (a zero row stays zero)."""
    matrix = rows.astype(np.float64)
    unit: np.ndarray = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return unit


def joint_embeddings(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of image and text rows: the space the nearest-neighbour vote searches."""
    mixed = image.astype(np.float32) + text.astype(np.float32)
    norms = np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    joint: np.ndarray = (mixed / norms).astype(np.float32)
    return joint


def split_by_key(
    keys: Sequence[str], *, validation: float = 0.15, test: float = 0.15
) -> tuple[list[int], list[int], list[int]]:
    """Row indices of the train, validation and held-out test splits, decided by each key's sha256.

    Not random: a key always lands in the same split, whatever other keys are present, so a
    post in the held-out split stays there as new labels arrive.

    Raises:
        ValueError: the fractions are negative or add up to more than 1.
    """
    if validation < 0 or test < 0 or validation + test > 1:
        raise ValueError(f"validation ({validation}) and test ({test}) must be >= 0 and add up to at most 1")
    splits: tuple[list[int], list[int], list[int]] = ([], [], [])
    for row, key in enumerate(keys):
        point = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / _HASH_SPAN
        splits[2 if point < test else 1 if point < test + validation else 0].append(row)
    return splits


def dataset_digest(data: LabelledEmbeddings) -> str:
    """A 16-hex sha256 over keys, labels and embedding bytes: the snapshot a training run used."""
    digest = hashlib.sha256()
    for key in data.keys:
        encoded = key.encode()
        digest.update(len(encoded).to_bytes(4, "little") + encoded)  # length-prefixed: ("ab","c") != ("a","bc")
    arrays = (data.labels, data.image, data.text) + (() if data.sentence is None else (data.sentence,))
    for array in arrays:
        digest.update(repr(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return digest.hexdigest()[:16]
