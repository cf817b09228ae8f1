"""The CLIP embedder, where the engine has always imported it from (the adapters live in `vlm_engine.embedders`)."""

from __future__ import annotations

from vlm_engine.embedders import ClipRole, EmbedderRole

__all__ = ["ClipRole", "EmbedderRole"]
