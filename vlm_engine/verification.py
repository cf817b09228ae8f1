"""The verifier role: a cross-attention image–text matching model's P(match) for an image and a text.

A second opinion on posts looked at closer: where the embedder compares an image and a prompt
as two separate vectors, a matching model reads both together (text attending to image
patches) and says whether the text describes the image. Families are adapters keyed by the
checkpoint's `model_type` (VERIFIER_FAMILIES); each computes exactly what its transformers
model computes, checked against it by the equivalence tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from vlm_engine.checkpoints import checkpoint_is_real, checkpoint_load, checkpoint_version
from vlm_engine.registry import checkpoint_model_type, role_register
from vlm_engine.tiny_verifier import tiny_verifier_write
from vlm_engine.types import Category, Policy, VerifierMatch

if TYPE_CHECKING:
    import torch

# (image, text) pairs per forward pass: bounds memory when many categories are flagged at once.
PAIRS_PER_PASS = 64


class VerifierAdapter:
    """One family's matching call: images encoded once per batch, then every (image, text) pair scored.

    Subclasses name their transformers class and implement `images_encode` and `pairs_match`.
    """

    model_class: ClassVar[str]

    def __init__(self, model: Any, processor: Any, *, device: str) -> None:
        self.model = model
        self.processor = processor
        self.device = device

    @property
    def image_size(self) -> int:
        """Side of the square the model sees, in pixels."""
        return int(self.model.config.vision_config.image_size)

    @property
    def max_text_tokens(self) -> int:
        """The longest text the model reads, in tokens (longer texts are truncated)."""
        return int(self.model.config.text_config.max_position_embeddings)

    def images_encode(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Whatever the pair step needs of each image, row per image, on the device."""
        raise NotImplementedError

    def pairs_match(self, encoded: dict[str, torch.Tensor], rows: torch.Tensor,
                    tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(match) of pair i: image `rows[i]` of `encoded` with text i of `tokens`; shape (pairs,) float32."""
        raise NotImplementedError

    def _pixels(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """The image processor's tensors, floating ones in the model's dtype, on the device."""
        found = self.processor.image_processor(images=list(images), return_tensors="pt")
        return dict(found.to(device=self.device, dtype=self.model.dtype))


class BlipMatching(VerifierAdapter):
    """BLIP's ITM head (`BlipForImageTextRetrieval`, use_itm_head=True): the vision tower runs once per image."""

    model_class = "BlipForImageTextRetrieval"

    def images_encode(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        pixels = self._pixels(images)["pixel_values"]
        return {"image_embeds": self.model.vision_model(pixel_values=pixels).last_hidden_state}

    def pairs_match(self, encoded: dict[str, torch.Tensor], rows: torch.Tensor,
                    tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        image_embeds = encoded["image_embeds"][rows]
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        hidden = self.model.text_encoder(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
            encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
        ).last_hidden_state
        return _second_class(self.model.itm_head(hidden[:, 0, :]))


class WholeModelMatching(VerifierAdapter):
    """Families whose towers interleave (single-stream or bridged): the whole model runs per pair.

    `logits_field` names the output holding the matching logits; one logit is a sigmoid score,
    two are (no match, match) classes.
    """

    logits_field: ClassVar[str] = "logits"
    model_kwargs: ClassVar[dict[str, Any]] = {}
    image_keys: ClassVar[tuple[str, ...]] = ("pixel_values", "pixel_mask")
    text_keys: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask", "token_type_ids")

    def images_encode(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        pixels = self._pixels(images)
        return {key: pixels[key] for key in self.image_keys if key in pixels}

    def pairs_match(self, encoded: dict[str, torch.Tensor], rows: torch.Tensor,
                    tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: tokens[key] for key in self.text_keys if key in tokens}
        inputs.update({key: value[rows] for key, value in encoded.items()})
        logits: torch.Tensor = getattr(self.model(**inputs, **self.model_kwargs), self.logits_field)
        return logits[:, 0].float().sigmoid() if logits.shape[-1] == 1 else _second_class(logits)


class BridgeTowerMatching(WholeModelMatching):
    """BridgeTower's ITM (`BridgeTowerForImageAndTextRetrieval`): uni-modal layers bridged into cross-modal ones."""

    model_class = "BridgeTowerForImageAndTextRetrieval"


class ViltMatching(WholeModelMatching):
    """ViLT's retrieval head (`ViltForImageAndTextRetrieval`): one transformer over patches and words, a sigmoid score."""

    model_class = "ViltForImageAndTextRetrieval"

    @property
    def image_size(self) -> int:
        return int(self.processor.image_processor.size["shortest_edge"])

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.config.max_position_embeddings)


class Blip2Matching(WholeModelMatching):
    """BLIP-2's Q-Former ITM (`Blip2ForImageTextRetrieval`, use_image_text_matching_head=True)."""

    model_class = "Blip2ForImageTextRetrieval"
    logits_field = "logits_per_image"
    model_kwargs = {"use_image_text_matching_head": True}
    text_keys = ("input_ids", "attention_mask")

    @property
    def max_text_tokens(self) -> int:
        return int(self.model.config.qformer_config.max_position_embeddings)


class FlavaMatching(VerifierAdapter):
    """FLAVA's ITM head (`FlavaForPreTraining` itm_logits): one FLAVA pass, not the pre-training pair of passes."""

    model_class = "FlavaForPreTraining"

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_config.image_size)

    def images_encode(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": self._pixels(images)["pixel_values"]}

    def pairs_match(self, encoded: dict[str, torch.Tensor], rows: torch.Tensor,
                    tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        # FlavaForPreTraining scores ITM on the pass over `input_ids_masked`, which is the plain text at inference.
        output = self.model.flava(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
            token_type_ids=tokens.get("token_type_ids"), pixel_values=encoded["pixel_values"][rows],
        )
        return _second_class(self.model.itm_head(output.multimodal_embeddings))


# The checkpoint's config `model_type` -> its family's adapter.
VERIFIER_FAMILIES: dict[str, type[VerifierAdapter]] = {
    "blip": BlipMatching,
    "bridgetower": BridgeTowerMatching,
    "vilt": ViltMatching,
    "blip-2": Blip2Matching,
    "flava": FlavaMatching,
}


# One registered role for every matching family: it picks the family's adapter by model_type.
@role_register("verifier", *VERIFIER_FAMILIES, version_prefix="itm", tiny=tiny_verifier_write)
class VerifierRole:
    """A loaded image–text matching checkpoint; `match` is preprocess → forward (device) → postprocess (numpy)."""

    def __init__(self, adapter: VerifierAdapter, *, version: str, real: bool = True,
                 pairs_per_pass: int = PAIRS_PER_PASS) -> None:
        self.adapter = adapter
        self.version = version
        self.real = real  # False: random weights, so the output is no finding
        self.pairs_per_pass = pairs_per_pass

    @classmethod
    def load(cls, name_or_path: str, *, device: str, dtype: str, local_files_only: bool = False) -> VerifierRole:
        """Load a matching checkpoint of any family in VERIFIER_FAMILIES, chosen by its `model_type`.

        Args:
            name_or_path: a Hugging Face model id or a local checkpoint directory.
            device: torch device string, e.g. "cpu" or "cuda:0".
            dtype: "float32", "bfloat16" or "float16".
            local_files_only: never touch the network (local path or HF cache only).

        Raises:
            OSError: the checkpoint cannot be found or read.
            ValueError: the checkpoint's model_type has no verifier family.
        """
        import transformers

        model_type = checkpoint_model_type(name_or_path, local_files_only=local_files_only)
        family = VERIFIER_FAMILIES.get(model_type)
        if family is None:
            raise ValueError(f"{name_or_path} is a {model_type!r} checkpoint; a verifier must be one of "
                             f"{', '.join(sorted(VERIFIER_FAMILIES))}")
        model, processor = checkpoint_load(getattr(transformers, family.model_class), name_or_path, device=device,
                                           dtype=dtype, local_files_only=local_files_only)
        adapter = family(model, processor, device=device)
        return cls(adapter, version=checkpoint_version("itm", name_or_path), real=checkpoint_is_real(name_or_path))

    @property
    def image_size(self) -> int:
        """Side of the square the model sees, in pixels."""
        return self.adapter.image_size

    def match(self, images: Sequence[Image.Image], texts: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """P(match) of `images[i]` with each text of `texts[i]`: the images encoded in one pass, the pairs
        in passes of `pairs_per_pass`.

        Returns:
            One float64 array per image, `texts[i]`'s length, each value in [0, 1].

        Raises:
            ValueError: `images` and `texts` differ in length.
        """
        import torch

        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} lists of texts")
        pairs = [(row, text) for row, row_texts in enumerate(texts) for text in row_texts]
        if not pairs:
            return [np.zeros(0) for _ in texts]
        with torch.inference_mode():
            encoded = self.adapter.images_encode([images[row] for row in sorted({row for row, _ in pairs})])
            probabilities = np.concatenate([self._pass(encoded, pairs, start)
                                            for start in range(0, len(pairs), self.pairs_per_pass)])
        return list(np.split(probabilities, np.cumsum([len(row_texts) for row_texts in texts])[:-1]))

    def _pass(self, encoded: dict[str, torch.Tensor], pairs: list[tuple[int, str]], start: int) -> np.ndarray:
        import torch

        chunk = pairs[start : start + self.pairs_per_pass]
        # Rows of `encoded` hold only the images that have texts, in image order.
        positions = {row: index for index, row in enumerate(sorted({row for row, _ in pairs}))}
        rows = torch.tensor([positions[row] for row, _ in chunk], device=self.adapter.device)
        tokens = self.adapter.processor.tokenizer(
            [text for _, text in chunk], padding=True, truncation=True,
            max_length=self.adapter.max_text_tokens, return_tensors="pt")
        tokens = {key: value.to(self.adapter.device) for key, value in tokens.items()}
        matched: torch.Tensor = self.adapter.pairs_match(encoded, rows, tokens)
        return matched.float().cpu().numpy().astype(np.float64)


def verifier_text(prompt: str, read_text: str) -> str:
    """The text matched against an image: a category prompt, then the words read from the image, if any.

    Matching models take one text; a meme says its message in printed words that the prompt
    alone would not match.
    """
    words = " ".join(read_text.split())
    return f'{prompt.strip()}, with the words "{words}"' if words else prompt.strip()


class Verification:
    """The cascade's verifier step: matches each flagged category's prompts and blends the best match in.

    A category is flagged when its score reaches `threshold` (the look-closer threshold). Its
    match is the highest P(match) over its prompts; with real weights its score becomes
    `(1 - weight) * score + weight * match`. Random weights change no score.
    """

    def __init__(self, verifier: VerifierRole, *, weight: float, threshold: float) -> None:
        self.verifier = verifier
        self.weight = weight if verifier.real else 0.0
        self.threshold = threshold

    def verify(self, images: Sequence[Image.Image], scores: Sequence[dict[str, float]],
               read_texts: Sequence[str], policy: Policy) -> list[tuple[VerifierMatch, ...]]:
        """One tuple of matches per post (policy order), its `scores` row blended in place.

        Args:
            images: the posts' decoded images.
            scores: each post's category scores, row per image.
            read_texts: the text read from each image ("" when none, or when the reader is random).
            policy: the categories and their prompts.
        """
        flagged = [[c for c in policy.categories if c.prompts and row.get(c.slug, 0.0) >= self.threshold]
                   for row in scores]
        texts = [[verifier_text(prompt, read) for category in categories for prompt in category.prompts]
                 for categories, read in zip(flagged, read_texts)]
        found = self.verifier.match(images, texts)
        return [self._matches(categories, probabilities, row)
                for categories, probabilities, row in zip(flagged, found, scores)]

    def _matches(self, categories: list[Category], probabilities: np.ndarray,
                 row: dict[str, float]) -> tuple[VerifierMatch, ...]:
        matches, start = [], 0
        for category in categories:
            prompts = probabilities[start : start + len(category.prompts)]
            best = int(np.argmax(prompts))
            start += len(category.prompts)
            match = float(prompts[best])
            if self.weight > 0.0:  # at 0 a random model's NaN cannot reach the score either
                row[category.slug] = (1.0 - self.weight) * row[category.slug] + self.weight * match
            matches.append(VerifierMatch(category=category.slug, match=match, prompt=category.prompts[best],
                                         weight=self.weight))
        return tuple(matches)


def _second_class(logits: torch.Tensor) -> torch.Tensor:
    """P(class 1) of (no match, match) logits, in float32 whatever the model's dtype."""
    return logits.float().softmax(dim=-1)[:, 1]
