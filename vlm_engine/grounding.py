"""The grounder role: boxes for phrases with OWLv2, every phrase of a batch in one forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vlm_engine.registry import CheckpointRole, role_register
from vlm_engine.tiny_grounder import tiny_grounder_write
from vlm_engine.types import Grounding

if TYPE_CHECKING:
    import torch

# Phrase embeddings kept between calls; policies use a few dozen phrases, so this never fills
# in practice, and when it does the oldest go first.
QUERY_CACHE_SIZE = 4096


# OWL-ViT has the same heads but does not pad to a square, so its boxes would map back wrong: OWLv2 only.
@role_register("grounder", "owlv2", auto_class="AutoModelForZeroShotObjectDetection", tiny=tiny_grounder_write)
class GrounderRole(CheckpointRole):
    """A loaded OWLv2 checkpoint; each call is preprocess → forward (device) → postprocess (numpy).

    The transformers "zero-shot-object-detection" pipeline runs the whole model once per phrase
    per image; here the images of a batch go through the vision tower once, the phrases not yet
    cached go through the text tower once, and the detection heads score every phrase at once.
    """

    def _setup(self) -> None:
        self.max_text_tokens = int(self.model.config.text_config.max_position_embeddings)
        self._query_embeds: dict[str, torch.Tensor] = {}

    @property
    def image_size(self) -> int:
        """Side of the padded square the model sees, in pixels (960 for OWLv2 base)."""
        return int(self.processor.image_processor.size["height"])

    def ground(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        *,
        threshold: float = 0.1,
        nms_iou: float = 0.3,
        max_boxes_per_phrase: int = 5,
    ) -> list[list[Grounding]]:
        """Boxes for the phrases wanted in each image, in ONE forward pass for the whole batch.

        Args:
            images: RGB images of any size.
            phrases: `phrases[i]` are the phrases to look for in `images[i]`.
            threshold: keep a box whose score (sigmoid of the logit) is above this.
            nms_iou: drop a box overlapping a better box of the same phrase by more than this
                IoU; 1.0 keeps every box.
            max_boxes_per_phrase: keep at most this many boxes of each phrase per image.

        Returns:
            For each image, its groundings in original-image pixels, best score first.

        Raises:
            ValueError: `images` and `phrases` differ in length.
        """
        if len(images) != len(phrases):
            raise ValueError(f"got {len(images)} images but {len(phrases)} phrase lists")
        queries = list(dict.fromkeys(phrase for wanted in phrases for phrase in wanted))
        if not queries:
            return [[] for _ in images]
        pixel_values = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        scores, centre_boxes = self._detect(pixel_values, queries)
        columns = {phrase: index for index, phrase in enumerate(queries)}
        corner_boxes = _corners_from_centres(centre_boxes)
        results: list[list[Grounding]] = []
        for image, image_scores, image_boxes, wanted in zip(images, scores, corner_boxes, phrases):
            unique = list(dict.fromkeys(wanted))
            pixel_boxes = grounding_boxes_to_original(image_boxes, width=image.width, height=image.height)
            results.append(
                _image_groundings(
                    image_scores[:, [columns[phrase] for phrase in unique]],
                    pixel_boxes,
                    unique,
                    threshold=threshold,
                    nms_iou=nms_iou,
                    max_boxes_per_phrase=max_boxes_per_phrase,
                )
            )
        return results

    def _detect(self, pixel_values: torch.Tensor, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n, patches, queries) and normalised (cx, cy, w, h) boxes (n, patches, 4)."""
        import torch

        query_embeds = self._queries_embed(queries)
        with torch.inference_mode():
            pixels = pixel_values.to(device=self.device, dtype=self.model.dtype)
            feature_map = self.model.image_embedder(pixel_values=pixels)[0]
            batch, rows, cols, width = feature_map.shape
            image_feats = feature_map.reshape(batch, rows * cols, width)
            logits = self.model.class_predictor(image_feats, query_embeds.expand(batch, -1, -1))[0]
            boxes = self.model.box_predictor(image_feats, feature_map)
            return torch.sigmoid(logits.float()).cpu().numpy(), boxes.float().cpu().numpy()

    def _queries_embed(self, queries: Sequence[str]) -> torch.Tensor:
        """Phrase embeddings (q, d) on the device; phrases not cached yet are encoded in one pass."""
        import torch

        embeds = {query: self._query_embeds[query] for query in queries if query in self._query_embeds}
        missing = [query for query in queries if query not in embeds]
        if missing:
            embeds.update(zip(missing, self._text_forward(missing)))
            self._queries_remember({query: embeds[query] for query in missing})
        return torch.stack([embeds[query] for query in queries])

    def _queries_remember(self, embeds: dict[str, torch.Tensor]) -> None:
        for query, embed in embeds.items():
            if len(self._query_embeds) >= QUERY_CACHE_SIZE:
                del self._query_embeds[next(iter(self._query_embeds))]  # the oldest
            self._query_embeds[query] = embed

    def _text_forward(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        # Padded to the full length, as Owlv2Processor does, with OWLv2's own padding id.
        tokens = self.processor.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        with torch.inference_mode():
            embeds = self.model.owlv2.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            ).pooler_output
            # Owlv2Model normalises its text embeddings before the class head sees them.
            normalised: torch.Tensor = embeds / torch.linalg.norm(embeds, ord=2, dim=-1, keepdim=True)
            return normalised


def grounding_boxes_to_original(boxes: np.ndarray, *, width: int, height: int) -> np.ndarray:
    """Map normalised (x0, y0, x1, y1) boxes on OWLv2's padded square to original-image pixels.

    OWLv2's processor pads the image at the bottom or right to a square of side max(width,
    height) before resizing, so the normalised coordinates are relative to that square.
    Boxes reaching into the padding are clipped to the image.
    """
    side = float(max(width, height))
    limits = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(np.asarray(boxes, dtype=np.float64) * side, 0.0, limits)


def boxes_nms(boxes: np.ndarray, scores: np.ndarray, *, iou_threshold: float, limit: int | None = None) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first, at most `limit` of them.

    A box is dropped when its IoU with a better box already kept is above `iou_threshold`.
    Each kept box suppresses its overlaps in one vectorised step, and the search stops once
    `limit` boxes are kept (OWLv2 proposes thousands of boxes per phrase at 960 px).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept: list[int] = []
    while order.size and (limit is None or len(kept) < limit):
        best, order = int(order[0]), order[1:]
        kept.append(best)
        order = order[_ious(boxes[best], boxes[order]) <= iou_threshold]
    return kept


def _ious(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    union = _areas(box[None])[0] + _areas(others) - intersection
    return np.asarray(intersection / np.maximum(union, 1e-12))


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.asarray((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def _corners_from_centres(boxes: np.ndarray) -> np.ndarray:
    centres, sizes = boxes[..., :2], boxes[..., 2:]
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=-1)


def _image_groundings(
    scores: np.ndarray,
    boxes: np.ndarray,
    phrases: Sequence[str],
    *,
    threshold: float,
    nms_iou: float,
    max_boxes_per_phrase: int,
) -> list[Grounding]:
    """One image's groundings from its (patches, phrases) scores and (patches, 4) pixel boxes."""
    # A box wholly in the padding is clipped to nothing: it points at no part of the image.
    visible = _areas(boxes) > 0
    groundings: list[Grounding] = []
    for column, phrase in enumerate(phrases):
        candidates = np.flatnonzero((scores[:, column] > threshold) & visible)
        kept = boxes_nms(boxes[candidates], scores[candidates, column], iou_threshold=nms_iou,
                         limit=max_boxes_per_phrase)
        groundings += [_grounding(phrase, boxes[index], scores[index, column]) for index in candidates[kept]]
    return sorted(groundings, key=lambda grounding: -grounding.score)


def _grounding(phrase: str, box: np.ndarray, score: float) -> Grounding:
    x0, y0, x1, y1 = (round(float(value), 1) for value in box)
    return Grounding(phrase=phrase, box=(x0, y0, x1, y1), score=float(score))
