"""Quality floor on our own drawn meme set: what an offline `make run` scores must not regress."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.memes import meme_set
from bench.quality import default_policy, quality
from vlm_engine.clip import ClipRole
from vlm_engine.config import PACKAGED_TEXT, EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.reading import OcrReaderRole
from vlm_engine.text import TextRole

pytestmark = pytest.mark.slow


def test_offline_zero_shot_separates_hateful_memes_and_reads_every_word(
    tiny_dir: Path, reader: OcrReaderRole, minilm: TextRole
) -> None:
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", reader="rapidocr",
                                      text=PACKAGED_TEXT)
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")
    engine = Engine(config, clip, reader=reader, text=minilm)

    row = quality(engine, meme_set(6), default_policy())

    # bench.quality measures the whole set (README); this floor on its first 12 memes catches regressions.
    assert row["memes"] == 12 and row["ocr_word_recall"] == 1.0
    assert row["hate_auroc"] is not None and row["hate_auroc"] >= 0.85
    scores = row["hate_scores"]
    assert scores["m6"] < 0.2  # "I HATE MONDAYS", the hard negative
