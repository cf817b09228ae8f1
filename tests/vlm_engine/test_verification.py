"""The verifier role: every family's P(match) equals its transformers model's own, batched or not."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vlm_engine.checkpoints import RANDOM_WEIGHTS_MARKER
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.tiny_verifier import TINY_VERIFIER_BUILDERS, tiny_verifier_write
from vlm_engine.types import Category, Policy, PostInput
from vlm_engine.verification import VERIFIER_FAMILIES, Verification, VerifierRole, verifier_text

IMAGES = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (30, 50), (10, 120, 40)),
          Image.linear_gradient("L").convert("RGB").resize((48, 48))]
TEXTS = [["a photo of a gun", "blood and gore", "a cat"], ["an advert for a scam"],
         ["hate symbol", "a normal everyday photo"]]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("verifiers")
    return {family: tiny_verifier_write(directory, family) for family in TINY_VERIFIER_BUILDERS}


@pytest.fixture(scope="module")
def roles(checkpoints: dict[str, Path]) -> dict[str, VerifierRole]:
    return {family: VerifierRole.load(str(path), device="cpu", dtype="float32") for family, path in checkpoints.items()}


def reference(model: Any, processor: Any, image: Image.Image, texts: list[str]) -> np.ndarray:
    """transformers' own call on (image, text) pairs, the way each model card scores a match."""
    inputs = processor(images=[image] * len(texts), text=texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        if model.config.model_type == "blip":
            logits = model(**inputs, use_itm_head=True).itm_score
        elif model.config.model_type == "blip-2":
            logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
        elif model.config.model_type == "flava":
            logits = model(**inputs, input_ids_masked=inputs["input_ids"], return_loss=False).itm_logits
        else:
            logits = model(**inputs).logits
    if logits.shape[-1] == 1:
        return logits[:, 0].sigmoid().numpy().astype(np.float64)
    return logits.softmax(-1)[:, 1].numpy().astype(np.float64)


@pytest.mark.parametrize("family", sorted(TINY_VERIFIER_BUILDERS))
def test_engine_match_equals_the_transformers_model_call(roles, family):  # type: ignore[no-untyped-def]
    role = roles[family]

    found = role.match(IMAGES, TEXTS)

    model, processor = role.adapter.model, role.adapter.processor
    expected = [reference(model, processor, image, texts) for image, texts in zip(IMAGES, TEXTS)]
    assert [len(row) for row in found] == [3, 1, 2]
    for got, want in zip(found, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # The random heads must tell pairs apart, or the comparison above would prove little.
    assert np.ptp(np.concatenate(found)) > 1e-3


@pytest.mark.parametrize("family", sorted(TINY_VERIFIER_BUILDERS))
def test_batched_equals_one_pair_at_a_time(roles, family, monkeypatch):  # type: ignore[no-untyped-def]
    role = roles[family]
    batched = np.concatenate(role.match(IMAGES, TEXTS))

    monkeypatch.setattr(role, "pairs_per_pass", 1)
    one_by_one = np.concatenate([role.match([image], [[text]])[0] for image, texts in zip(IMAGES, TEXTS)
                                 for text in texts])

    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-5)


def test_families_are_found_by_model_type(roles):  # type: ignore[no-untyped-def]
    classes = {family: type(role.adapter).model_class for family, role in roles.items()}
    assert classes == {"blip": "BlipForImageTextRetrieval", "blip-2": "Blip2ForImageTextRetrieval",
                       "bridgetower": "BridgeTowerForImageAndTextRetrieval", "flava": "FlavaForPreTraining",
                       "vilt": "ViltForImageAndTextRetrieval"}
    assert set(VERIFIER_FAMILIES) == set(roles)
    assert {family: role.real for family, role in roles.items()} == dict.fromkeys(roles, False)


def test_a_checkpoint_of_another_kind_is_refused_by_name(tiny_clip_dir):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="is a 'clip' checkpoint; a verifier must be one of blip, blip-2"):
        VerifierRole.load(str(tiny_clip_dir), device="cpu", dtype="float32")


def test_images_without_texts_get_empty_rows(roles):  # type: ignore[no-untyped-def]
    role = roles["blip"]
    found = role.match(IMAGES, [[], ["a cat"], []])
    assert [len(row) for row in found] == [0, 1, 0]
    np.testing.assert_allclose(found[1], role.match(IMAGES[1:2], [["a cat"]])[0], rtol=0, atol=1e-6)
    assert role.match([], []) == []


def test_read_text_travels_with_the_prompt():  # type: ignore[no-untyped-def]
    assert verifier_text(" a photo of hate ", "") == "a photo of hate"
    assert verifier_text("a photo of hate", " KILL\n ALL ") == 'a photo of hate, with the words "KILL ALL"'


POLICY = Policy(version="1", benign_prompts=("a cat",), categories=(
    Category(slug="violence", name="Violence", prompts=("a photo of violence", "blood and gore")),
    Category(slug="spam", name="Spam", prompts=("an advert for a scam",)),
    Category(slug="drugs", name="Drugs", prompts=()),
))


@pytest.mark.parametrize("real", [True, False])
def test_flagged_categories_are_matched_and_blended_only_with_real_weights(roles, real, monkeypatch):  # type: ignore[no-untyped-def]
    role = roles["blip"]
    monkeypatch.setattr(role, "real", real)
    scores = [{"violence": 0.6, "spam": 0.2, "drugs": 0.9}, {"violence": 0.1, "spam": 0.5, "drugs": 0.0}]
    before = [dict(row) for row in scores]

    found = Verification(role, weight=0.25, threshold=0.35).verify(IMAGES[:2], scores, ["", "BUY NOW"], POLICY)

    violence = role.match([IMAGES[0]], [["a photo of violence", "blood and gore"]])[0]
    spam = role.match([IMAGES[1]], [['an advert for a scam, with the words "BUY NOW"']])[0]
    weight = 0.25 if real else 0.0
    best = int(np.argmax(violence))
    assert [[(m.category, m.prompt, m.weight) for m in row] for row in found] == [
        [("violence", POLICY.categories[0].prompts[best], weight)], [("spam", "an advert for a scam", weight)]]
    assert [m.match for row in found for m in row] == pytest.approx([violence[best], spam[0]], abs=1e-6)
    if real:
        assert scores == [{**before[0], "violence": 0.75 * 0.6 + 0.25 * found[0][0].match},
                          {**before[1], "spam": 0.75 * 0.5 + 0.25 * found[1][0].match}]
    else:
        assert scores == before


def _png(color: tuple[int, int, int]) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buffer, format="PNG")
    return buffer.getvalue()


POSTS = [PostInput(key=str(i), image=_png((i * 70, 30, 90)), text="hello") for i in range(3)] + [
    PostInput(key="text-only", image=None, text="buy now")]


@pytest.fixture(scope="module")
def engines(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Engine]:
    """The tiny engine without a verifier, with the tiny one, and with a copy of it marked as trained."""
    trained = tmp_path_factory.mktemp("trained") / "verifier"
    shutil.copytree(tiny_dir / "verifier", trained)
    (trained / RANDOM_WEIGHTS_MARKER).unlink()
    configs = {"none": {"verifier": ""}, "tiny": {}, "trained": {"verifier": str(trained)}}
    return {name: Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="",
                                                              look_closer=0.0, **extra))
            for name, extra in configs.items()}


def test_a_random_verifier_is_listed_and_changes_no_score(engines, policy):  # type: ignore[no-untyped-def]
    without, tiny = engines["none"].analyze(POSTS, policy), engines["tiny"].analyze(POSTS, policy)

    assert [dict(a.scores) for a in tiny] == [dict(a.scores) for a in without]
    assert [len(a.verification) for a in tiny] == [3, 3, 3, 0]  # look_closer 0: every category is flagged
    assert {m.weight for a in tiny for m in a.verification} == {0.0}
    assert "verifier" in tiny[0].no_checkpoint and "verifier" not in without[0].no_checkpoint
    assert "+itm:verifier@" in tiny[0].model_version
    assert "verify" in tiny[0].timings_ms and "verify" not in without[0].timings_ms


def test_a_trained_verifier_takes_its_weight_of_each_flagged_score(engines, policy):  # type: ignore[no-untyped-def]
    without, trained = engines["none"].analyze(POSTS, policy), engines["trained"].analyze(POSTS, policy)

    assert engines["trained"].roles_real()["verifier"] is True
    for plain, blended in zip(without[:3], trained[:3]):
        matches = {m.category: m.match for m in blended.verification}
        assert {m.weight for m in blended.verification} == {0.3}
        assert dict(blended.scores) == {slug: 0.7 * score + 0.3 * matches[slug] for slug, score in plain.scores.items()}
    assert dict(trained[3].scores) == dict(without[3].scores)
