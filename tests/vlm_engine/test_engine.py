"""Tests for the engine: scores match the transformers reference, batching, plain results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.vlm_engine.sample_images import image_bytes
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.imaging import image_decode
from vlm_engine.types import Analysis, EngineInputError, Policy, PostInput

pytestmark = pytest.mark.slow


def _clip_only(tiny_dir: Path, **settings: Any) -> EngineConfig:
    """CLIP scoring alone, to compare with CLIP references; test_cascade.py covers the other roles."""
    return EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="", verifier="",
                                      **settings)


@pytest.fixture
def engine(tiny_dir: Path) -> Engine:
    """A fresh engine per test: its prompt cache must start empty for the forward counts."""
    return Engine.from_config(_clip_only(tiny_dir))


@pytest.fixture
def forward_calls(engine: Engine) -> Iterator[dict[str, int]]:
    """Counts forward passes through the vision and text towers."""
    calls = {"image": 0, "text": 0}

    def counter(tower: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            calls[tower] += 1

        return hook

    handles = [
        engine.clip.model.vision_model.register_forward_hook(counter("image")),
        engine.clip.model.text_model.register_forward_hook(counter("text")),
    ]
    yield calls
    for handle in handles:
        handle.remove()


def test_image_scores_equal_transformers_pipeline(engine: Engine, tiny_clip_dir: Path, policy: Policy) -> None:
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=str(tiny_clip_dir))
    data = image_bytes((48, 40), seed=1)
    [analysis] = engine.analyze([PostInput(key="p1", image=data)], policy)
    image = image_decode(data).image
    for category in policy.categories:
        labels = list(category.prompts + policy.benign_prompts)
        results = classifier(image, candidate_labels=labels, hypothesis_template="{}")
        expected = sum(r["score"] for r in results if r["label"] in category.prompts)
        assert analysis.scores[category.slug] == pytest.approx(expected, abs=1e-5)


def test_text_scores_equal_clip_logits(engine: Engine, tiny_clip_dir: Path, policy: Policy) -> None:
    import torch
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(str(tiny_clip_dir))
    processor = AutoProcessor.from_pretrained(str(tiny_clip_dir))
    category = policy.categories[0]
    labels = list(category.prompts + policy.benign_prompts)
    [analysis] = engine.analyze([PostInput(key="t", image=None, text="buy drugs now")], policy)
    with torch.inference_mode():
        post = model.get_text_features(**processor.tokenizer(["buy drugs now"], return_tensors="pt")).pooler_output
        label_tokens = processor.tokenizer(labels, padding=True, return_tensors="pt")
        prompts = model.get_text_features(**label_tokens).pooler_output
        cosine = torch.nn.functional.normalize(post) @ torch.nn.functional.normalize(prompts).T
        probs = (model.logit_scale.exp() * cosine).softmax(dim=-1)[0]
    assert analysis.scores[category.slug] == pytest.approx(float(probs[: len(category.prompts)].sum()), abs=1e-5)


def test_analyze_costs_one_forward_per_tower(engine: Engine, forward_calls: dict[str, int], policy: Policy) -> None:
    posts = [PostInput(key=f"p{i}", image=image_bytes((32 + i, 32), seed=i), text=f"post {i}") for i in range(5)]
    engine.analyze(posts, policy)
    # One text forward for the policy prompts, one for the five post texts.
    assert forward_calls == {"image": 1, "text": 2}
    engine.analyze(posts, policy)
    assert forward_calls == {"image": 2, "text": 3}


def test_analyze_chunks_by_batch_size(tiny_dir: Path, policy: Policy) -> None:
    engine = Engine.from_config(_clip_only(tiny_dir, batch_size=2))
    posts = [PostInput(key=f"p{i}", image=image_bytes((32, 32), seed=i)) for i in range(5)]
    chunked = engine.analyze(posts, policy)
    whole = Engine.from_config(_clip_only(tiny_dir)).analyze(posts, policy)
    for small, big in zip(chunked, whole):
        assert small.scores == pytest.approx(big.scores, abs=1e-6)


def _assert_plain(value: Any) -> None:
    if isinstance(value, dict):
        assert all(type(key) is str for key in value)
        for item in value.values():
            _assert_plain(item)
    elif isinstance(value, tuple):
        for item in value:
            _assert_plain(item)
    else:
        assert value is None or type(value) in (str, float), type(value)


def test_analyze_returns_plain_values_in_order(engine: Engine, policy: Policy) -> None:
    posts = [
        PostInput(key="image-and-text", image=image_bytes((40, 40), seed=3, image_format="JPEG"), text="a cat"),
        PostInput(key="image-only", image=image_bytes((40, 40), seed=4)),
        PostInput(key="text-only", image=None, text="free money"),
    ]
    results = engine.analyze(posts, policy)
    assert [r.key for r in results] == ["image-and-text", "image-only", "text-only"]
    for result in results:
        assert type(result) is Analysis
        for field in ("key", "scores", "image_embedding", "text_embedding", "model_version", "timings_ms"):
            _assert_plain(getattr(result, field))
        assert set(result.scores) == {"violence", "spam", "drugs"}
        assert all(0.0 <= score <= 1.0 for score in result.scores.values())
        assert set(result.timings_ms) == {"decode", "embed", "score"}
        assert result.model_version == engine.model_version
    assert [(r.image_embedding is None, r.text_embedding is None) for r in results] == [
        (False, False),
        (False, True),
        (True, False),
    ]
    assert results[2].text_embedding == pytest.approx(engine.embed_query("free money"), abs=1e-6)


def test_joint_embedding_mixes_image_and_text(engine: Engine, policy: Policy) -> None:
    data = image_bytes((40, 40), seed=5)
    both, image_only, text_only = engine.analyze(
        [PostInput("both", data, "a gun"), PostInput("image", data), PostInput("text", None, "a gun")], policy
    )
    image, text = np.array(image_only.image_embedding), np.array(text_only.text_embedding)
    joint = (image + text) / np.linalg.norm(image + text)
    labels = engine.clip.embed_texts(list(policy.categories[1].prompts + policy.benign_prompts))
    probs = engine.clip.label_probs(joint[None], labels)
    assert both.scores["spam"] == pytest.approx(float(probs[0, 0]), abs=1e-6)


def test_embedding_norms_and_model_version(engine: Engine) -> None:
    query = engine.embed_query("a photo of a cat " * 100)  # longer than 77 tokens: truncated
    assert len(query) == 32
    assert float(np.linalg.norm(query)) == pytest.approx(1.0, abs=1e-6)
    name, sha = engine.model_version.removeprefix("clip:").split("@")
    assert (name, len(sha)) == ("clip", 12)


@pytest.mark.parametrize(
    ("post", "code"),
    [
        (PostInput(key="bad", image=b"<html></html>", text="hi"), "image_format"),
        (PostInput(key="bad", image=b"", text="hi"), "image_empty"),
        (PostInput(key="bad", image=None, text="   "), "input_empty"),
    ],
)
def test_analyze_names_the_bad_post(engine: Engine, policy: Policy, post: PostInput, code: str) -> None:
    good = PostInput(key="good", image=image_bytes((32, 32)))
    with pytest.raises(EngineInputError) as caught:
        engine.analyze([good, post], policy)
    assert (caught.value.key, caught.value.code) == ("bad", code)


def test_analyze_empty_batch(engine: Engine, policy: Policy) -> None:
    assert engine.analyze([], policy) == []
