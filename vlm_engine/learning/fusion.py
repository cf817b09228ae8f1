"""The fusion head (Hate-CLIPper / RGCL "align" fusion) and its trained, calibrated, saved form."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from torch import nn
from torch.nn import functional as F

from vlm_engine.learning.calibration import probabilities_calibrated
from vlm_engine.learning.config import TrainingConfig

FORMAT = "vlm_engine.fusion_head/1"
_TEMPERATURES = "temperatures"


class FusionHead(nn.Module):
    """Image and text projected (Linear, dropout, L2 norm), multiplied element-wise, then an MLP to logits.

    With `sentence_dim` > 0 the sentence embedding is projected the same way and joins the
    MLP's input beside the image ⊙ text product (concatenated), so the text role's reading of
    the words counts whatever the image shows.
    """

    def __init__(self, dim: int, *, hidden: int, categories: int, dropout: float, sentence_dim: int = 0) -> None:
        super().__init__()
        self.sentence_dim = sentence_dim
        self.image_proj = nn.Linear(dim, hidden)
        self.text_proj = nn.Linear(dim, hidden)
        self.sentence_proj = nn.Linear(sentence_dim, hidden) if sentence_dim else None
        self.dropout = nn.Dropout(dropout)
        width = 2 * hidden if sentence_dim else hidden
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, categories)
        )

    def forward(self, image: torch.Tensor, text: torch.Tensor, sentence: torch.Tensor | None = None) -> torch.Tensor:
        image_side = F.normalize(self.dropout(self.image_proj(image)), dim=-1)
        text_side = F.normalize(self.dropout(self.text_proj(text)), dim=-1)
        fused = image_side * text_side
        if self.sentence_proj is not None:
            rows = sentence if sentence is not None else image.new_zeros((len(image), self.sentence_dim))
            fused = torch.cat([fused, F.normalize(self.dropout(self.sentence_proj(rows)), dim=-1)], dim=-1)
        logits: torch.Tensor = self.mlp(fused)
        return logits


class TrainedHead:
    """A trained fusion head with one calibration temperature per category.

    `version` names it in `Analysis.model_version` ("+head:<version>"); it defaults to
    `digest` and the caller may set its own (e.g. the ModelVersion's name).
    """

    def __init__(
        self, model: FusionHead, *, categories: Sequence[str], config: TrainingConfig, temperatures: Sequence[float]
    ) -> None:
        self.model = model.eval()
        self.categories = tuple(categories)
        self.config = config
        self.temperatures = tuple(float(value) for value in temperatures)
        self.version = self.digest

    def predict(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None = None) -> np.ndarray:
        """(n, C) float64 calibrated probabilities for (n, d) image and text embeddings.

        `sentence` (n, s) counts when the head was trained with sentence embeddings; missing
        (None, or of another size), it is zeros: the head then judges by the CLIP views.
        """
        return probabilities_calibrated(self.logits(image, text, sentence), np.array(self.temperatures))

    def logits(self, image: np.ndarray, text: np.ndarray, sentence: np.ndarray | None = None) -> np.ndarray:
        """(n, C) float32 uncalibrated logits."""
        with torch.inference_mode():
            logits: np.ndarray = self.model(_tensor(image), _tensor(text), self._sentence(sentence)).numpy()
        return logits

    def _sentence(self, sentence: np.ndarray | None) -> torch.Tensor | None:
        width = self.model.sentence_dim
        if not width or sentence is None or sentence.ndim != 2 or sentence.shape[1] != width:
            return None
        return _tensor(sentence)

    def save(self, path: str | Path) -> None:
        """Write ONE safetensors file: the weights, the temperatures, and categories/config as metadata."""
        Path(path).write_bytes(self._file_bytes)

    @classmethod
    def load(cls, path: str | Path) -> TrainedHead:
        """Read a head written by `save`.

        Raises:
            OSError: the file cannot be read.
            ValueError: the file is not a saved fusion head.
        """
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise ValueError(f"{path} is not a saved fusion head (format {metadata.get('format')!r})")
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        categories = json.loads(metadata["categories"])
        config = TrainingConfig(**json.loads(metadata["config"]))
        temperatures = tensors.pop(_TEMPERATURES).tolist()
        dim = tensors["image_proj.weight"].shape[1]
        sentence_dim = tensors["sentence_proj.weight"].shape[1] if "sentence_proj.weight" in tensors else 0
        model = FusionHead(dim, hidden=config.hidden, categories=len(categories), dropout=config.dropout,
                           sentence_dim=sentence_dim)
        model.load_state_dict(tensors)
        return cls(model, categories=categories, config=config, temperatures=temperatures)

    @property
    def digest(self) -> str:
        """12 hex of the sha256 of the saved file: the same weights always give the same digest."""
        return hashlib.sha256(self._file_bytes).hexdigest()[:12]

    @cached_property
    def _file_bytes(self) -> bytes:
        """The saved file, built once: the weights never change after training."""
        tensors = {name: value.detach().contiguous() for name, value in self.model.state_dict().items()}
        tensors[_TEMPERATURES] = torch.tensor(self.temperatures, dtype=torch.float64)
        metadata = {
            "format": FORMAT,
            "categories": json.dumps(list(self.categories)),
            "config": json.dumps(dataclasses.asdict(self.config), sort_keys=True),
        }
        return _header_canonical(safetensors_save(tensors, metadata=metadata))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _header_canonical(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes metadata in hash-map order, which changes from process to process;
    sorted, the bytes (and so the digest) depend on the content alone.
    """
    length = int.from_bytes(data[:8], "little")
    header: dict[str, Any] = json.loads(data[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the tensor data stays 8-byte aligned, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + data[8 + length :]
