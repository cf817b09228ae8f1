"""The embedder role: image and text embeddings, and zero-shot label probabilities, one adapter per family.

Every family is a contrastive dual encoder loaded through ``AutoModel``; an adapter says how its
model pools and projects (``_image_features`` / ``_text_features``), how it pads text, and how
a cosine similarity becomes a label probability:

- CLIP, AltCLIP, ChineseCLIP, FLAVA: ``softmax(exp(logit_scale) · cos)`` across the labels;
- ALIGN: ``softmax(cos / temperature)`` across the labels;
- SigLIP, SigLIP2: ``sigmoid(exp(logit_scale) · cos + logit_bias)`` per label, each on its own
  (so a post can match several labels, and a category's score is its best prompt's, not a
  share of a softmax shared with the benign prompts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from vlm_engine.registry import CheckpointRole, role_register
from vlm_engine.tiny import tiny_clip_write
from vlm_engine.tiny_embedders import (tiny_align_write, tiny_altclip_write, tiny_chinese_clip_write,
                                       tiny_flava_write, tiny_siglip2_write, tiny_siglip_write)

if TYPE_CHECKING:
    import torch


class EmbedderRole(CheckpointRole):
    """A loaded dual encoder; each call is preprocess → forward (device) → postprocess (numpy).

    Subclasses override the hooks below; the public methods are the engine's whole use of an embedder.
    """

    # What the tokenizer pads to: True (the batch's longest) or "max_length" (a model trained on fixed length).
    text_padding: ClassVar[bool | str] = True
    # Whether labels compete (softmax across them) or are each judged alone (sigmoid).
    sigmoid: ClassVar[bool] = False

    def _setup(self) -> None:
        text_config = self._text_config()
        limits = [int(text_config.max_position_embeddings), int(self.processor.tokenizer.model_max_length)]
        self.max_text_tokens = min(limits)
        # Read once: plain floats, so scoring stays in numpy.
        self.logit_scale, self.logit_bias = self._logit_parameters()

    def _logit_parameters(self) -> tuple[float, float]:
        """(scale, bias) turning a cosine into the model's logit."""
        return float(self.model.logit_scale.detach().float().exp().item()), 0.0

    def _text_config(self) -> Any:
        return self.model.config.text_config

    @property
    def image_size(self) -> int:
        """Side of the square the model sees, in pixels."""
        return int(self.model.config.vision_config.image_size)

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised image embeddings, shape (n, d) float32, in ONE forward pass."""
        if not images:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        inputs = self.processor.image_processor(images=list(images), return_tensors="pt")
        return _normalised(self._forward(self._image_features, inputs))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings, shape (n, d) float32, truncated to the model's length; ONE forward."""
        if not texts:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        tokens = self.processor.tokenizer(
            list(texts), padding=self.text_padding, truncation=True, max_length=self.max_text_tokens,
            return_tensors="pt",
        )
        return _normalised(self._forward(self._text_features, tokens))

    def label_logits(self, embeddings: np.ndarray, label_embeddings: np.ndarray) -> np.ndarray:
        """The model's own `logits_per_image` for normalised embeddings: scale · cosine + bias, float64."""
        cosine = embeddings.astype(np.float64) @ label_embeddings.astype(np.float64).T
        logits: np.ndarray = self.logit_scale * cosine + self.logit_bias
        return logits

    def label_probs(self, embeddings: np.ndarray, label_embeddings: np.ndarray) -> np.ndarray:
        """Label probabilities, shape (n, labels): softmax across labels, or a sigmoid per label (SigLIP)."""
        logits = self.label_logits(embeddings, label_embeddings)
        if self.sigmoid:
            sigmoid: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
            return sigmoid
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        probs: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
        return probs

    def category_scores(self, probs: np.ndarray, own: int) -> np.ndarray:
        """A category's score from `label_probs` whose first `own` columns are its prompts.

        Softmax: the probability mass its prompts win against the benign prompts. Sigmoid: its
        best prompt's probability (the benign columns do not compete).
        """
        if self.sigmoid:
            best: np.ndarray = probs[:, :own].max(axis=-1)
            return best
        mass: np.ndarray = probs[:, :own].sum(axis=-1)
        return mass

    def _image_features(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        features: torch.Tensor = self.model.get_image_features(**inputs).pooler_output
        return features

    def _text_features(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        features: torch.Tensor = self.model.get_text_features(**inputs).pooler_output
        return features

    def _forward(self, features: Any, inputs: Mapping[str, Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            on_device = {
                key: value.to(device=self.device, dtype=self.model.dtype) if value.is_floating_point()
                else value.to(self.device)
                for key, value in inputs.items()
            }
            result: torch.Tensor = features(on_device)
            return result.float().cpu().numpy()


@role_register("embedder", "clip", tiny=tiny_clip_write)
class ClipRole(EmbedderRole):
    """OpenAI CLIP: softmax over labels of exp(logit_scale) · cosine."""


@role_register("embedder", "altclip", tiny=tiny_altclip_write)
class AltClipRole(EmbedderRole):
    """AltCLIP: CLIP's vision tower with a multilingual XLM-R text tower."""


@role_register("embedder", "chinese_clip", tiny=tiny_chinese_clip_write)
class ChineseClipRole(EmbedderRole):
    """Chinese CLIP: CLIP's vision tower with a Chinese RoBERTa text tower, [CLS] pooled."""


@role_register("embedder", "siglip", tiny=tiny_siglip_write)
class SiglipRole(EmbedderRole):
    """SigLIP: a sigmoid per label; text padded to the fixed length it was trained on (it pools the last token)."""

    text_padding = "max_length"
    sigmoid = True

    def _logit_parameters(self) -> tuple[float, float]:
        scale, _ = super()._logit_parameters()
        return scale, float(self.model.logit_bias.detach().float().item())

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.vision_config.hidden_size)


@role_register("embedder", "siglip2", tiny=tiny_siglip2_write)
class Siglip2Role(SiglipRole):
    """SigLIP 2 (NaFlex): variable-resolution patches, so the image processor also returns a patch mask and shapes."""

    @property
    def image_size(self) -> int:
        """The side of a square image holding the processor's patch budget."""
        image_processor = self.processor.image_processor
        side = int(np.sqrt(int(image_processor.max_num_patches)))
        return side * int(image_processor.patch_size)


@role_register("embedder", "align", tiny=tiny_align_write)
class AlignRole(EmbedderRole):
    """ALIGN: EfficientNet image tower, BERT text tower; softmax of cosine / temperature."""

    def _logit_parameters(self) -> tuple[float, float]:
        return 1.0 / float(self.model.temperature.detach().float().item()), 0.0


@role_register("embedder", "flava", tiny=tiny_flava_write)
class FlavaRole(EmbedderRole):
    """FLAVA's unimodal encoders: the projected [CLS] token of each, as its global contrastive head uses them."""

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_config.image_size)

    def _image_features(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        features: torch.Tensor = self.model.get_image_features(**inputs).pooler_output[:, 0, :]
        return features

    def _text_features(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        features: torch.Tensor = self.model.get_text_features(**inputs).pooler_output[:, 0, :]
        return features


def _normalised(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    # An all-zero row stays zero instead of turning into NaN.
    normalised: np.ndarray = (features / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised
