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


def test_the_sentence_embedding_is_stored_and_steers_the_precedents(tiny_dir: Path, minilm: TextRole) -> None:
    from vlm_engine.learning import AsifClassifier, LabelledEmbeddings

    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", reader="",
                                      text=PACKAGED_MINILM, text_role_weight=0.0)
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")
    engine = Engine(config, clip, text=minilm)
    texts = ["send the foreigners back", "deport all of them", "my cat sleeps all day", "coffee before work"]
    anchors = engine.analyze([PostInput(key=f"a{i}", image=None, text=t) for i, t in enumerate(texts)], POLICY)
    stored = np.array([a.sentence_embedding for a in anchors], np.float32)
    assert np.allclose(stored, minilm.embed(texts), atol=1e-5)  # the text role's, of the post's text
    examples = LabelledEmbeddings(
        image=np.array([a.image_embedding or a.text_embedding for a in anchors], np.float32),
        text=np.array([a.text_embedding for a in anchors], np.float32),
        labels=np.array([[1.0], [1.0], [0.0], [0.0]], np.float32), keys=tuple(a.key for a in anchors),
        sentence=np.array([a.sentence_embedding for a in anchors], np.float32))
    vote = AsifClassifier(examples, categories=["hate"], k=1, min_labels=1, sentence_weight=1.0)

    results = engine.analyze([PostInput(key="q1", image=None, text="kick every immigrant out"),
                              PostInput(key="q2", image=None, text="my dog naps on the sofa")], POLICY, classifier=vote)

    assert [r.scores["hate"] for r in results] == [1.0, 0.0]


def test_without_a_text_role_no_sentence_embedding_is_stored(tiny_dir: Path) -> None:
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", reader="", text="")
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")

    result = Engine(config, clip).analyze([PostInput(key="a", image=None, text="hello")], POLICY)[0]

    assert result.sentence_embedding is None and result.text_embedding is not None
