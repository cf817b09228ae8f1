"""The engine: analyses a batch of posts against a policy, returning plain-value results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from vlm_engine.cascade import NO_FINDINGS, Findings, LookCloser, classifier_text
from vlm_engine.embedders import EmbedderRole
from vlm_engine.config import EngineConfig
from vlm_engine.generation import Generator
from vlm_engine.grounding import GrounderRole
from vlm_engine.imaging import DecodedImage, ImageRejected, image_decode
from vlm_engine.reading import NO_READING, RAPIDOCR, VLM_READER, OcrReaderRole, Reading
from vlm_engine.registry import role_create
from vlm_engine.scoring import Classifier, PromptTable, ZeroShotScorer, classifier_scores_apply
from vlm_engine.text import TextRole, TextScorer
from vlm_engine.timing import stage_timed
from vlm_engine.types import Analysis, Answer, EngineInputError, Grounding, Policy, PostInput, VerifierMatch, Word
from vlm_engine.verification import Verification, VerifierRole

_Role = TypeVar("_Role")


@dataclass
class _Scored:
    """A batch's embeddings, scores and findings, row per post; the re-scoring step updates rows."""

    image_embs: list[np.ndarray | None]
    text_embs: list[np.ndarray | None]
    scores: list[dict[str, float]]
    findings: list[Findings]
    by_classifier: list[bool]  # whether the learned classifier gave some of the row's scores
    readings: list[Reading]  # what the OCR reader read, row per post (NO_READING without one)
    sentence_embs: list[np.ndarray | None]  # the text role's embeddings (None: no text role, or no text)
    verification: list[tuple[VerifierMatch, ...]] | None = None  # the verifier's matches, row per post


class Engine:
    """Scores posts with the embedder (CLIP or another family), then looks closer with the grounder, generator and verifier where configured."""

    def __init__(
        self,
        config: EngineConfig,
        clip: EmbedderRole,
        *,
        grounder: GrounderRole | None = None,
        generator: Generator | None = None,
        reader: OcrReaderRole | None = None,
        text: TextRole | None = None,
        verifier: VerifierRole | None = None,
    ) -> None:
        self.config = config
        self.clip = clip
        self.grounder = grounder
        self.generator = generator
        self.reader = reader
        self.text = text
        self.verifier = verifier
        roles = (clip, grounder, generator, reader, text, verifier)
        self.model_version = "+".join(role.version for role in roles if role is not None)
        self._look_closer = LookCloser(
            grounder, generator, threshold=config.grounding_threshold, max_new_tokens=config.max_new_tokens,
            read_text=config.reader == VLM_READER,
        )
        self._scorer = ZeroShotScorer(clip, batch_size=config.batch_size, text_weight=config.text_weight)
        # A random embedder's scores are noise: with a real text role, posts with text are scored by it alone.
        weight = 1.0 if text is not None and text.real and not clip.real else config.text_role_weight
        self._text_scorer = TextScorer(text, weight=weight, batch_size=config.batch_size) if text is not None else None
        self._verification = None if verifier is None else Verification(
            verifier, weight=config.verifier_weight, threshold=config.look_closer)

    @classmethod
    def from_config(cls, config: EngineConfig) -> Engine:
        """Load the roles named by `config` through the registry (`vlm_engine.registry.role_create`):
        the embedder, and the grounder, generator, verifier, reader and text roles unless disabled.

        Raises:
            OSError: a checkpoint cannot be found or read.
            UnknownFamily (a ValueError): a checkpoint's model_type has no adapter for its role.
        """
        def create(kind: str, name: str, dtype: str = config.dtype) -> Any:
            return role_create(kind, name, device=config.device, dtype=dtype) if name else None

        return cls(
            config,
            create("embedder", config.clip),
            grounder=create("grounder", config.grounder),
            generator=create("generator", config.generator),
            reader=create("reader", RAPIDOCR if config.reader == RAPIDOCR else ""),
            text=create("text", config.text, "float32"),  # small, and its similarities are compared in tenths
            verifier=create("verifier", config.verifier),
        )

    def roles_real(self) -> dict[str, bool]:
        """Role kind -> whether its checkpoint holds trained weights (False: random tiny weights).

        Only configured roles are listed, the embedder first.
        """
        roles: dict[str, EmbedderRole | GrounderRole | Generator | OcrReaderRole | TextRole | VerifierRole | None] = {
            "embedder": self.clip, "grounder": self.grounder, "generator": self.generator, "reader": self.reader,
            "text": self.text, "verifier": self.verifier}
        if self.reader is None and self.config.reader == VLM_READER and self.generator is not None \
                and self.generator.instructed:
            roles["reader"] = self.generator  # the generator reads, as well as its weights allow (a captioner cannot)
        return {kind: bool(role.real) for kind, role in roles.items() if role is not None}

    def decode(self, posts: Sequence[PostInput]) -> list[DecodedImage | None]:
        """Decode each post's image for `analyze` (None for a text-only post).

        JPEGs decode in draft mode at the largest side a role wants. Thread-safe and mostly
        outside the GIL, so a worker can decode the next batch while this one runs.

        Raises:
            EngineInputError: a post's image cannot be decoded, or the post is empty.
        """
        return [self._decode(post) for post in posts]

    def analyze(
        self,
        posts: Sequence[PostInput],
        policy: Policy,
        *,
        classifier: Classifier | None = None,
        decoded: Sequence[DecodedImage | None] | None = None,
        readings: Sequence[Reading] | None = None,
    ) -> list[Analysis]:
        """Analyse a batch of posts: CLIP scores for all, a closer look for some.

        Each model runs once per batch (CLIP in `batch_size` chunks). With `look_closer`
        <= 0 every post with an image is grounded and generated for first, and the text read
        from its image joins its text before the one scoring pass. Otherwise the batch is
        scored first; posts with an image whose highest score reaches `look_closer` are
        grounded and generated for; those whose image held text then get a SECOND CLIP text
        pass (over that subset only) and are re-scored with their combined text.

        Args:
            posts: the batch; results come back in the same order.
            policy: the categories to score, with the phrases to ground and questions to ask.
            classifier: a learned scorer (`vlm_engine.learning`: a trained head or the ASIF or kNN
                vote); the policy categories it covers take its probabilities (its NaN: the
                zero-shot score), before the look-closer decision. A post it scored gets
                "+head:<classifier.version>" in its model_version when it has a version.
            decoded: `decode(posts)`, when the caller decoded them ahead of time.
            readings: `read(decoded)`, when the caller read them ahead of time (with `decoded`).

        Returns:
            One Analysis per post.

        Raises:
            EngineInputError: a post's image cannot be decoded, or the post is empty;
                `.key` names it so the caller can retry the rest without it.
        """
        if not posts:
            return []
        timings: dict[str, float] = {}
        if decoded is None:
            with stage_timed(timings, "decode"):
                decoded = self.decode(posts)
        elif len(decoded) != len(posts):
            raise ValueError(f"got {len(decoded)} decoded images for {len(posts)} posts")
        images = [None if item is None else item.image for item in decoded]
        readings = self.read(decoded, timings) if readings is None or len(readings) != len(posts) else list(readings)
        with stage_timed(timings, "embed"):
            table = self._scorer.prompt_table(policy)
            if self._text_scorer is not None:
                table = replace(table, text=self._text_scorer.table(policy))
        if self.config.look_closer <= 0:
            scored = self._look_then_score(posts, images, policy, table, timings, classifier, readings)
        else:
            scored = self._score_then_look(posts, images, policy, table, timings, classifier, readings)
        head = getattr(classifier, "version", None)
        version = f"+head:{head}" if isinstance(head, str) and head else ""
        return [self._analysis(post, row, scored, policy, timings, version, decoded[row])
                for row, post in enumerate(posts)]

    def ask(self, items: Sequence[tuple[PostInput, str]]) -> list[Answer]:
        """Answer a question about each post's image, in ONE generate call for the whole list.

        Args:
            items: (post, question) pairs; answers come back in the same order.

        Raises:
            EngineInputError: a post has no image ("input_no_image") or a bad one, or the
                generator is not configured or answers no questions ("role_unavailable";
                `questions_unanswered` says which beforehand).
        """
        if not items:
            return []
        unanswered = self.questions_unanswered()
        if unanswered is not None:
            raise EngineInputError(items[0][0].key, unanswered, code="role_unavailable")
        generator, decoded = self._adhoc_inputs(self.generator, "generator", [post for post, _ in items])
        images = [item.image for item in decoded]
        questions = [question for _, question in items]
        answers = generator.answer(images, questions, max_new_tokens=self.config.max_new_tokens)
        return [Answer(question=question, answer=answer) for (_, question), answer in zip(items, answers)]

    def ground(self, items: Sequence[tuple[PostInput, Sequence[str]]]) -> list[list[Grounding]]:
        """Boxes for each post's phrases (above `config.grounding_threshold`), in ONE grounder pass.

        Args:
            items: (post, phrases) pairs; results come back in the same order.

        Raises:
            EngineInputError: a post has no image ("input_no_image") or a bad one, or the
                grounder is not configured ("role_unavailable").
        """
        if not items:
            return []
        grounder, decoded = self._adhoc_inputs(self.grounder, "grounder", [post for post, _ in items])
        phrases = [list(wanted) for _, wanted in items]
        found = grounder.ground([item.image for item in decoded], phrases, threshold=self.config.grounding_threshold)
        return [list(_in_original_pixels(boxes, item)) for boxes, item in zip(found, decoded)]

    def caption(self, items: Sequence[tuple[PostInput, str | None]]) -> list[str]:
        """Caption each post's image, in ONE generate call for the whole list.

        Args:
            items: (post, prefix) pairs: None asks for a plain caption, a prefix such as
                "a photo of" steers it (`conditional_caption_prompt`). Same order back.

        Raises:
            EngineInputError: a post has no image ("input_no_image") or a bad one, or the
                generator is not configured ("role_unavailable").
        """
        if not items:
            return []
        generator, decoded = self._adhoc_inputs(self.generator, "generator", [post for post, _ in items])
        images = [item.image for item in decoded]
        return generator.caption(images, [prefix for _, prefix in items], max_new_tokens=self.config.max_new_tokens)

    def questions_unanswered(self) -> str | None:
        """Why `ask` cannot answer with the configured generator ("blip answers no questions": a pure
        captioner), or None when it can or there is no generator (`ask` then says that)."""
        if self.generator is None or self.generator.answers_questions:
            return None
        return getattr(self.generator, "answers_unavailable", None) or f"{self.generator.family} answers no questions"

    def embed_query(self, text: str) -> tuple[float, ...]:
        """L2-normalised CLIP text embedding of a search query, comparable to image embeddings."""
        return tuple(float(value) for value in self.clip.embed_texts([text])[0])

    def read(self, decoded: Sequence[DecodedImage | None], timings: dict[str, float] | None = None) -> list[Reading]:
        """The OCR reader's words for every post with an image, boxes in original pixels (NO_READING
        without a reader). ONNX Runtime runs outside the GIL, so a worker can read the next batch
        while this one runs, as it decodes it."""
        if self.reader is None:
            return [NO_READING] * len(decoded)
        present = [item for item in decoded if item is not None]
        with stage_timed({} if timings is None else timings, "read"):
            found = iter(self.reader.read([item.image for item in present]))
        return [NO_READING if item is None else _reading_in_original_pixels(next(found), item) for item in decoded]

    def _look_then_score(
        self,
        posts: Sequence[PostInput],
        images: list[Image.Image | None],
        policy: Policy,
        table: PromptTable,
        timings: dict[str, float],
        classifier: Classifier | None,
        readings: list[Reading],
    ) -> _Scored:
        """look_closer <= 0: look at every post with an image, then score once with the text read from it."""
        with_image = [row for row, image in enumerate(images) if image is not None]
        findings = self._findings(posts, images, with_image, policy, timings)
        texts = [classifier_text(post.text, reading.text or found.ocr_text)
                 for post, found, reading in zip(posts, findings, readings)]
        scored = self._scored(images, texts, table, findings, timings, classifier, readings)
        self._verify(images, with_image, scored, policy, timings)
        return scored

    def _score_then_look(
        self,
        posts: Sequence[PostInput],
        images: list[Image.Image | None],
        policy: Policy,
        table: PromptTable,
        timings: dict[str, float],
        classifier: Classifier | None,
        readings: list[Reading],
    ) -> _Scored:
        """look_closer > 0: score all (with the OCR reader's text), look at the high scorers, re-score
        those whose image the generator read text from."""
        texts = [classifier_text(post.text, reading.text) for post, reading in zip(posts, readings)]
        scored = self._scored(images, texts, table, [NO_FINDINGS] * len(posts), timings, classifier, readings)
        chosen = [
            row
            for row, (image, scores) in enumerate(zip(images, scored.scores))
            if image is not None and max(scores.values(), default=0.0) >= self.config.look_closer
        ]
        scored.findings = self._findings(posts, images, chosen, policy, timings)
        rescored = [row for row in chosen if scored.findings[row].ocr_text]
        self._rescore(posts, rescored, scored, table, timings, classifier)
        self._verify(images, chosen, scored, policy, timings)
        return scored

    def _findings(
        self,
        posts: Sequence[PostInput],
        images: list[Image.Image | None],
        rows: list[int],
        policy: Policy,
        timings: dict[str, float],
    ) -> list[Findings]:
        chosen_images = [image for image in (images[row] for row in rows) if image is not None]
        found = self._look_closer.findings([posts[row] for row in rows], chosen_images, policy, timings)
        by_row = dict(zip(rows, found))
        return [by_row.get(row, NO_FINDINGS) for row in range(len(posts))]

    def _scored(
        self,
        images: list[Image.Image | None],
        texts: list[str],
        table: PromptTable,
        findings: list[Findings],
        timings: dict[str, float],
        classifier: Classifier | None,
        readings: list[Reading],
    ) -> _Scored:
        with stage_timed(timings, "embed"):
            image_embs = self._scorer.embed_images(images)
            text_embs = self._scorer.embed_texts([text.strip() or None for text in texts])
        sentence_embs = self._sentences(texts, timings)
        with stage_timed(timings, "score"):
            scores = self._scorer.scores(image_embs, text_embs, table)
            self._text_blend(scores, sentence_embs, table)
            by_classifier = classifier_scores_apply(scores, image_embs, text_embs, classifier, sentence_embs)
        return _Scored(image_embs, text_embs, scores, findings, by_classifier, readings, sentence_embs)

    def _rescore(
        self,
        posts: Sequence[PostInput],
        rows: list[int],
        scored: _Scored,
        table: PromptTable,
        timings: dict[str, float],
        classifier: Classifier | None,
    ) -> None:
        """The second CLIP text pass: the rows whose image text was read after they were scored."""
        if not rows:
            return
        texts = [classifier_text(posts[row].text, scored.findings[row].ocr_text) for row in rows]
        with stage_timed(timings, "embed"):
            text_embs = self._scorer.embed_texts(texts)
        sentence_embs = self._sentences(texts, timings)
        with stage_timed(timings, "score"):
            image_embs = [scored.image_embs[row] for row in rows]
            scores = self._scorer.scores(image_embs, text_embs, table)
            self._text_blend(scores, sentence_embs, table)
            by_classifier = classifier_scores_apply(scores, image_embs, text_embs, classifier, sentence_embs)
        for row, text_emb, row_scores, by, sentence in zip(rows, text_embs, scores, by_classifier, sentence_embs):
            scored.text_embs[row], scored.scores[row], scored.by_classifier[row] = text_emb, row_scores, by
            scored.sentence_embs[row] = sentence

    def _sentences(self, texts: Sequence[str], timings: dict[str, float]) -> list[np.ndarray | None]:
        """The text role's embeddings of the posts' texts (long text is not cut at 77); None without one."""
        if self._text_scorer is None:
            return [None] * len(texts)
        with stage_timed(timings, "text"):
            return self._text_scorer.embed([text.strip() or None for text in texts])

    def _verify(self, images: list[Image.Image | None], rows: list[int], scored: _Scored, policy: Policy,
                timings: dict[str, float]) -> None:
        """The verifier's matches for the looked-at rows' flagged categories, blended into their scores."""
        if self._verification is None or not rows:
            return
        reader_real = self.roles_real().get("reader", False)  # a random reader's text would only add noise
        read = [(scored.readings[row].text or scored.findings[row].ocr_text or "") if reader_real else ""
                for row in rows]
        with stage_timed(timings, "verify"):
            found = self._verification.verify([image for image in (images[row] for row in rows) if image is not None],
                                              [scored.scores[row] for row in rows], read, policy)
        scored.verification = [()] * len(scored.scores)
        for row, matches in zip(rows, found):
            scored.verification[row] = matches

    def _text_blend(
        self, scores: list[dict[str, float]], embeddings: Sequence[np.ndarray | None], table: PromptTable
    ) -> None:
        """The text role's similarity to the policy's texts joins the zero-shot scores."""
        if self._text_scorer is not None and table.text is not None:
            self._text_scorer.blend(scores, embeddings, table.text)

    def _analysis(
        self,
        post: PostInput,
        row: int,
        scored: _Scored,
        policy: Policy,
        timings: dict[str, float],
        head: str,
        decoded: DecodedImage | None,
    ) -> Analysis:
        found, scores, reading = scored.findings[row], scored.scores[row], scored.readings[row]
        # A rationale argues for review; below every review threshold it would only mislead.
        review = any(scores[category.slug] >= category.review_threshold for category in policy.categories)
        return Analysis(
            key=post.key,
            scores=scores,
            image_embedding=_as_tuple(scored.image_embs[row]),
            text_embedding=_as_tuple(scored.text_embs[row]),
            sentence_embedding=_as_tuple(scored.sentence_embs[row]),
            model_version=self.model_version + (head if scored.by_classifier[row] else ""),
            timings_ms=dict(timings),
            groundings=_in_original_pixels(found.groundings, decoded),
            answers=found.answers,
            caption=found.caption,
            ocr_text=reading.text or found.ocr_text,
            ocr_words=reading.words,
            rationale=found.rationale if review else None,
            no_checkpoint=tuple(kind for kind, real in self.roles_real().items() if not real),
            real_roles=tuple(kind for kind, real in self.roles_real().items() if real),
            verification=scored.verification[row] if scored.verification else (),
        )

    def _adhoc_inputs(
        self, role: _Role | None, name: str, posts: Sequence[PostInput]
    ) -> tuple[_Role, list[DecodedImage]]:
        """The role an ad-hoc call needs, and every post's decoded image; `posts` is not empty."""
        if role is None:
            raise EngineInputError(posts[0].key, f"the {name} role is not configured", code="role_unavailable")
        return role, [self._decode_image(post) for post in posts]

    def _decode(self, post: PostInput) -> DecodedImage | None:
        if post.image is None and not post.text.strip():
            raise EngineInputError(post.key, "post has neither an image nor text", code="input_empty")
        return None if post.image is None else self._decode_image(post)

    def _decode_image(self, post: PostInput) -> DecodedImage:
        if post.image is None:
            raise EngineInputError(post.key, "this request needs an image and the post has none", code="input_no_image")
        side = self._draft_side()
        try:
            return image_decode(post.image, draft_size=(side, side))
        except ImageRejected as err:
            raise EngineInputError(post.key, err.message, code=err.code) from err

    def _draft_side(self) -> int:
        """Decode JPEGs in draft mode at the largest side a role wants: fast, without hurting the crop.

        CLIP gets twice its input side; OWLv2 its own (much larger) input side.
        """
        grounder_side = self.grounder.image_size if self.grounder is not None else 0
        reader_side = self.reader.image_size if self.reader is not None else 0
        return max(2 * self.clip.image_size, grounder_side, reader_side)


def _in_original_pixels(groundings: Sequence[Grounding], decoded: DecodedImage | None) -> tuple[Grounding, ...]:
    """Boxes found on a draft-decoded (smaller) JPEG, in the original image's pixels."""
    if decoded is None or decoded.image.size == (decoded.width, decoded.height):
        return tuple(groundings)
    sx, sy = decoded.width / decoded.image.width, decoded.height / decoded.image.height
    return tuple(
        replace(g, box=(g.box[0] * sx, g.box[1] * sy, g.box[2] * sx, g.box[3] * sy)) for g in groundings
    )


def _reading_in_original_pixels(reading: Reading, decoded: DecodedImage) -> Reading:
    """Word boxes read from a draft-decoded (smaller) JPEG, in the original image's pixels."""
    sx, sy = decoded.width / decoded.image.width, decoded.height / decoded.image.height
    words = tuple(
        Word(text=w.text, box=(w.box[0] * sx, w.box[1] * sy, w.box[2] * sx, w.box[3] * sy), score=w.score)
        for w in reading.words
    )
    return Reading(text=reading.text, words=words)


def _as_tuple(embedding: np.ndarray | None) -> tuple[float, ...] | None:
    return None if embedding is None else tuple(float(value) for value in embedding)
