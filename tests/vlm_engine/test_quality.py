"""Quality floors on our own drawn meme set: what an offline `make run` scores, zero-shot and after
reviewer decisions, must not regress."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.memes import Meme, meme_set
from bench.quality import after_decisions, default_policy, learners, meme_embeddings, memes_analyze, quality
from vlm_engine.clip import ClipRole
from vlm_engine.config import PACKAGED_TEXT, EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.reading import OcrReaderRole
from vlm_engine.text import TextRole
from vlm_engine.types import Analysis

pytestmark = pytest.mark.slow
SEEDS = range(5)


@pytest.fixture(scope="module")
def analysed(tiny_dir: Path, reader: OcrReaderRole, minilm: TextRole) -> tuple[Engine, list[Meme], list[Analysis]]:
    """The first 20 memes of each class, read and scored once for the module (OCR is most of the time)."""
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", reader="rapidocr",
                                      text=PACKAGED_TEXT)
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")
    engine = Engine(config, clip, reader=reader, text=minilm)
    memes = meme_set(20)
    return engine, memes, memes_analyze(engine, memes, default_policy())


def test_offline_zero_shot_separates_hateful_memes_and_reads_every_word(
    analysed: tuple[Engine, list[Meme], list[Analysis]]
) -> None:
    engine, memes, results = analysed

    row = quality(engine, memes, default_policy(), results)

    # bench.quality measures the whole set (README); this floor catches regressions.
    assert row["memes"] == 40 and row["ocr_word_recall"] == 1.0
    assert row["hate_auroc"] is not None and row["hate_auroc"] >= 0.85
    assert row["hate_scores"]["m20"] < 0.2  # "I HATE MONDAYS", the hard negative


def test_after_30_decisions_the_workers_precedents_keep_the_floor_and_learn_from_the_sentence_view(
    analysed: tuple[Engine, list[Meme], list[Analysis]]
) -> None:
    _, memes, results = analysed
    data = meme_embeddings(memes, results)
    zero_shot = np.array([r.scores["hate"] for r in results])
    asif = learners(1.0)["asif"]  # the weight the workers give the sentence view beside a random embedder

    mixed = after_decisions(data, asif, SEEDS, (30,), zero_shot, held_out=5)["30"]
    vote = after_decisions(data, asif, SEEDS, (30,), held_out=5)["30"]
    clip_only = after_decisions(replace(data, sentence=None), learners(0.0)["asif"], SEEDS, (30,), held_out=5)["30"]

    assert mixed["runs"] == 5 and mixed["mean"] >= 0.85
    assert vote["mean"] >= clip_only["mean"] + 0.15  # the random CLIP's views teach nothing; MiniLM's do
