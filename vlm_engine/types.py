"""Plain-value types crossing the engine boundary: inputs, policy, and results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PostInput:
    """One post to analyse.

    `key` is an opaque id chosen by the caller (a post UUID string); `image` holds the
    encoded bytes (JPEG/PNG/WebP/GIF) or None for a text-only post.
    """

    key: str
    image: bytes | None
    text: str = ""


@dataclass(frozen=True)
class Category:
    """A policy category: zero-shot prompts plus the thresholds that turn a score into a verdict."""

    slug: str
    name: str
    prompts: tuple[str, ...]
    severity: float = 1.0
    phrases: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    review_threshold: float = 0.5
    remove_threshold: float = 0.9
    description: str = ""
    exemplars: tuple[str, ...] = ()  # short example texts of the category, for the text role


@dataclass(frozen=True)
class Policy:
    """A versioned set of categories; benign prompts compete with every category's prompts."""

    version: str
    categories: tuple[Category, ...]
    benign_prompts: tuple[str, ...]
    benign_exemplars: tuple[str, ...] = ()  # short texts that break no rule, for the text role


@dataclass(frozen=True)
class Analysis:
    """The engine's result for one post, in plain Python values.

    `scores` maps category slug to a probability in [0, 1]; embeddings are L2-normalised
    CLIP embeddings (None when the post has no image / no text; the text embedding is of
    the post's text followed by the text read from its image, when any was read);
    `timings_ms` holds the wall time of each stage that ran ("decode", "embed", "score",
    "ground", "generate") for the batch the post was in. `model_version` names every
    loaded role, e.g. "clip:name@sha+owlv2:name@sha+vlm:name@sha".

    The cascade fills the rest for posts it looked closer at (else they stay empty):
    `groundings` boxes the policy's phrases, `answers` answers the policy's questions in
    policy order, `caption` describes the image, `ocr_text` is the text read from it (None
    when none was read), and `rationale` argues the verdict, kept only when some category's
    score reaches its review threshold.

    `ocr_words` are the words the OCR reader found (every post with an image, when one is
    configured), with boxes in original-image pixels; `ocr_text` then holds its lines.
    `no_checkpoint` names the role kinds ("embedder", "grounder", "generator", "reader",
    "text", "verifier") that ran on random weights: what they produced is noise, not a finding.

    `verification` holds the verifier's image–text match of each flagged category, for posts
    looked at closer (policy order); with a real verifier `scores` already include its share.
    """

    key: str
    scores: Mapping[str, float]
    image_embedding: tuple[float, ...] | None
    text_embedding: tuple[float, ...] | None
    model_version: str
    timings_ms: Mapping[str, float]
    groundings: tuple[Grounding, ...] = ()
    answers: tuple[Answer, ...] = ()
    caption: str | None = None
    ocr_text: str | None = None
    rationale: str | None = None
    no_checkpoint: tuple[str, ...] = ()
    real_roles: tuple[str, ...] = ()  # the role kinds with trained weights
    ocr_words: tuple[Word, ...] = ()
    sentence_embedding: tuple[float, ...] | None = None  # the text role's, of the same text (None: no role or text)
    verification: tuple[VerifierMatch, ...] = ()


class EngineInputError(ValueError):
    """One post's input cannot be processed; `key` says which, so the caller can isolate it."""

    def __init__(self, key: str, message: str, *, code: str = "input_invalid") -> None:
        super().__init__(f"post {key}: {message}")
        self.key = key
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Grounding:
    """A box for a phrase, in original-image pixel coordinates (x0, y0, x1, y1)."""

    phrase: str
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class Answer:
    """A generated answer to a question about an image."""

    question: str
    answer: str


@dataclass(frozen=True)
class Word:
    """A word read from an image, with its box in pixel coordinates (x0, y0, x1, y1)."""

    text: str
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class VerifierMatch:
    """The verifier's P(match) between a post's image and one category's best-matching prompt.

    `weight` is the share `match` took in the category's score: the configured verifier weight,
    or 0.0 when the verifier's weights are random (shown, never counted).
    """

    category: str
    match: float
    prompt: str
    weight: float
