"""Tests for the text role: the packaged MiniLM, hash-checked, mean-pooled, and its zero-shot scores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vlm_engine import text as text_module
from vlm_engine.clip import ClipRole
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.text import (MINILM_SHA256, PACKAGED_MINILM, SIMILARITY_SCALE, TextRole, TextScorer, WeightsMismatch,
                             packaged_minilm_dir, weights_verify)
from vlm_engine.types import Category, Policy, PostInput

pytestmark = pytest.mark.slow

POLICY = Policy(
    version="text-1",
    benign_prompts=("a harmless everyday photo",),
    benign_exemplars=("I hate Mondays", "my neighbours are from Syria and they are the kindest people"),
    categories=(
        Category(slug="hate", name="Hate", prompts=("a hateful meme",),
                 description="Attacks or slurs targeting people for their ethnicity, religion or nationality.",
                 exemplars=("go back to your country", "immigrants are vermin")),
        Category(slug="spam", name="Spam", prompts=("an advert for a scam",)),  # no texts: keeps its score
    ),
)


def test_packaged_minilm_loads_from_the_package_directory(minilm: TextRole) -> None:
    assert packaged_minilm_dir().name == "model" and (packaged_minilm_dir() / "model.safetensors").is_file()
    assert (minilm.version, minilm.real, minilm.max_tokens) == ("text:all-MiniLM-L6-v2@53aa51172d14", True, 256)
    embeddings = minilm.embed(["I HATE YOU", "a holiday photo", "GO BACK TO YOUR COUNTRY"], batch_size=2)
    assert embeddings.shape == (3, 384) and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([minilm.embed([t]) for t in ("I HATE YOU", "a holiday photo", "GO BACK TO YOUR COUNTRY")])
    assert np.allclose(embeddings, alone, atol=1e-5)


def test_mean_pooling_matches_the_model_by_hand(minilm: TextRole) -> None:
    import torch

    tokens = minilm.tokenizer(["go back"], return_tensors="pt")
    with torch.inference_mode():
        hidden = minilm.model(**tokens).last_hidden_state[0]
    expected = hidden.mean(dim=0).numpy()
    assert np.allclose(minilm.embed(["go back"])[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_text_past_clip_s_77_tokens_still_counts(minilm: TextRole) -> None:
    filler = "the weather today was mild and the shops opened late " * 10  # about 110 tokens
    plain, hateful = minilm.embed([filler, filler + "go back to your country"])
    assert float(plain @ hateful) < 0.999


def test_altered_packaged_weights_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(text_module, "MINILM_SHA256", "0" * 64)
    with pytest.raises(WeightsMismatch, match=f"has sha256 {MINILM_SHA256}, expected 0000"):
        TextRole.load(PACKAGED_MINILM, device="cpu")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"abc")
    weights_verify(weights, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_scores_blend_the_closest_category_text_against_the_closest_benign_one(minilm: TextRole) -> None:
    scorer = TextScorer(minilm, weight=0.4, batch_size=8)
    table = scorer.table(POLICY)
    posts = ["WHEN THEY SAY GO BACK TO YOUR COUNTRY", "I hate Mondays so much", None]
    scores = [{"hate": 0.5, "spam": 0.2} for _ in posts]

    scorer.blend(scores, scorer.embed(posts), table)

    references = minilm.embed([POLICY.categories[0].description, *POLICY.categories[0].exemplars])
    benign = minilm.embed([*POLICY.benign_exemplars, *POLICY.benign_prompts])
    for row, text in enumerate(posts[:2]):
        embedding = minilm.embed([str(text)])[0]
        margin = float(np.max(references @ embedding)) - float(np.max(benign @ embedding))
        expected = 0.6 * 0.5 + 0.4 / (1 + math.exp(-SIMILARITY_SCALE * margin))
        assert scores[row] == pytest.approx({"hate": expected, "spam": 0.2}, abs=1e-6)
    assert scores[0]["hate"] > 0.65 and scores[1]["hate"] < 0.35  # the hard negative scores low
    assert scores[2] == {"hate": 0.5, "spam": 0.2}


def test_the_engine_blends_text_scores_for_post_and_read_text(tiny_dir: Path, minilm: TextRole) -> None:
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", reader="",
                                      text=PACKAGED_MINILM, text_role_weight=1.0)
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")
    engine = Engine(config, clip, text=minilm)
    posts = [PostInput(key="a", image=None, text="go back to your country"),
             PostInput(key="b", image=None, text="I hate Mondays")]

    hateful, benign = engine.analyze(posts, POLICY)

    assert hateful.scores["hate"] > 0.9 and benign.scores["hate"] < 0.1
    assert engine.roles_real() == {"embedder": False, "text": True}
    assert hateful.model_version.endswith("+text:all-MiniLM-L6-v2@53aa51172d14")
    assert hateful.timings_ms["text"] > 0


def test_a_random_embedder_leaves_posts_with_text_to_the_real_text_role(tiny_dir: Path, minilm: TextRole) -> None:
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", reader="",
                                      text=PACKAGED_MINILM, text_role_weight=0.0)
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")
    post = PostInput(key="a", image=None, text="go back to your country")

    result = Engine(config, clip, text=minilm).analyze([post], POLICY)[0]

    scorer = TextScorer(minilm, weight=1.0, batch_size=8)
    expected = [{"hate": 0.0, "spam": result.scores["spam"]}]
    scorer.blend(expected, scorer.embed([post.text]), scorer.table(POLICY))
    assert result.scores == pytest.approx(expected[0], abs=1e-6)
