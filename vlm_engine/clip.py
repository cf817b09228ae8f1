"""The CLIP role: image and text embeddings, and zero-shot label probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vlm_engine.checkpoints import checkpoint_is_real, checkpoint_load, checkpoint_version

if TYPE_CHECKING:
    import torch


class ClipRole:
    """A loaded CLIP checkpoint; each call is preprocess → forward (device) → postprocess (numpy)."""

    def __init__(self, model: Any, processor: Any, *, version: str, device: str, real: bool = True) -> None:
        self.model = model
        self.processor = processor
        self.version = version
        self.real = real  # False: random weights, so the output is no finding
        self.device = device
        # Read once: a plain float, so scoring stays in numpy.
        self.logit_scale = float(model.logit_scale.detach().float().exp().item())
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def load(cls, name_or_path: str, *, device: str, dtype: str, local_files_only: bool = False) -> ClipRole:
        """Load a CLIP checkpoint and its processor with `from_pretrained`.

        Args:
            name_or_path: a Hugging Face model id or a local checkpoint directory.
            device: torch device string, e.g. "cpu" or "cuda:0".
            dtype: "float32", "bfloat16" or "float16".
            local_files_only: never touch the network (local path or HF cache only).

        Raises:
            OSError: the checkpoint cannot be found or read.
        """
        from transformers import AutoModel

        model, processor = checkpoint_load(AutoModel, name_or_path, device=device, dtype=dtype,
                                           local_files_only=local_files_only)
        version = checkpoint_version("clip", name_or_path)
        return cls(model, processor, version=version, device=device, real=checkpoint_is_real(name_or_path))

    @property
    def image_size(self) -> int:
        """Side of the square the model sees, in pixels."""
        return int(self.model.config.vision_config.image_size)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised image embeddings, shape (n, d) float32, in ONE forward pass."""
        if not images:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        pixel_values = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return _normalised(self._image_forward(pixel_values))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings, shape (n, d) float32, truncated to the model's length; ONE forward."""
        if not texts:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        tokens = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        return _normalised(self._text_forward(tokens["input_ids"], tokens["attention_mask"]))

    def label_probs(self, embeddings: np.ndarray, label_embeddings: np.ndarray) -> np.ndarray:
        """softmax(logit_scale * cosine) over labels, as CLIP's `logits_per_image.softmax(-1)`."""
        logits = self.logit_scale * (embeddings.astype(np.float64) @ label_embeddings.astype(np.float64).T)
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        probs: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
        return probs

    @property
    def embedding_dim(self) -> int:
        return int(self.model.config.projection_dim)

    def _image_forward(self, pixel_values: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pixels = pixel_values.to(device=self.device, dtype=self.model.dtype)
            features: torch.Tensor = self.model.get_image_features(pixel_values=pixels).pooler_output
            return features.float().cpu().numpy()

    def _text_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            features: torch.Tensor = self.model.get_text_features(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
            ).pooler_output
            return features.float().cpu().numpy()


def _normalised(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    # An all-zero row stays zero instead of turning into NaN.
    normalised: np.ndarray = (features / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised
