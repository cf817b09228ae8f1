"""Each embedder family against transformers' own model call, on tiny random checkpoints built offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.vlm_engine.sample_images import image_bytes
from vlm_engine.config import EngineConfig
from vlm_engine.embedders import EmbedderRole
from vlm_engine.engine import Engine
from vlm_engine.imaging import image_decode
from vlm_engine.registry import families, role_create
from vlm_engine.types import Policy, PostInput

pytestmark = pytest.mark.slow

FAMILIES = ("clip", "siglip", "siglip2", "align", "altclip", "chinese_clip", "flava")
SIGMOID = {"siglip", "siglip2"}
TEXTS = ("a photo of a cat", "hate symbol", "a man with a gun and a knife in a violent meme", "x")
TOLERANCE = 1e-5


def _images() -> list[Image.Image]:
    """Odd sizes and aspect ratios, so resizing and cropping (or NaFlex patching) differ per image."""
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((40, 50), (64, 31), (33, 33))]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family's tiny checkpoint, written once for the module by the builder it registered."""
    directory = tmp_path_factory.mktemp("embedders")
    written = {}
    for name, family in families("embedder").items():
        assert family.tiny is not None, f"{name} registered no tiny builder"
        written[name] = family.tiny(directory)
    return written


@pytest.fixture(scope="module")
def roles(checkpoints: dict[str, Path]) -> dict[str, EmbedderRole]:
    return {name: role_create("embedder", str(path), local_files_only=True) for name, path in checkpoints.items()}


def test_every_family_the_engine_promises_is_registered() -> None:
    assert sorted(families("embedder")) == sorted(FAMILIES)


def _reference(path: Path, family: str, images: list[Image.Image], texts: tuple[str, ...]) -> tuple[Any, Any, Any]:
    """(image embeds, text embeds, logits_per_image) from a separately loaded model's own forward."""
    import torch
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    # As the zero-shot pipeline does: the image processor on its own (Siglip2Processor's call would
    # replace the checkpoint's patch settings with its class defaults), fixed-length text for SigLIP.
    pixels = processor.image_processor(images=images, return_tensors="pt")
    padding = {"padding": "max_length", "max_length": 64, "truncation": True} if family in SIGMOID else {"padding": True}
    tokens = processor.tokenizer(list(texts), return_tensors="pt", **padding)
    with torch.inference_mode():
        if family == "flava":  # FlavaModel has no contrastive logits: its global contrastive head, by hand
            image = model.get_image_features(**pixels).pooler_output[:, 0, :]
            text = model.get_text_features(**tokens).pooler_output[:, 0, :]
            image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
            return image.numpy(), text.numpy(), (image @ text.T * model.logit_scale.exp()).numpy()
        out = model(**pixels, **tokens)
        return out.image_embeds.numpy(), out.text_embeds.numpy(), out.logits_per_image.numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_embeddings_and_probabilities_equal_the_model_call(
    family: str, roles: dict[str, EmbedderRole], checkpoints: dict[str, Path]
) -> None:
    role = roles[family]
    images = _images()
    image_embs, text_embs = role.embed_images(images), role.embed_texts(TEXTS)
    ref_images, ref_texts, ref_logits = _reference(checkpoints[family], family, images, TEXTS)
    assert np.isfinite(ref_logits).all()
    assert np.abs(image_embs - ref_images).max() < TOLERANCE
    assert np.abs(text_embs - ref_texts).max() < TOLERANCE
    assert np.abs(role.label_logits(image_embs, text_embs) - ref_logits).max() < 1e-4  # logits are scaled up
    expected = 1 / (1 + np.exp(-ref_logits.astype(np.float64))) if family in SIGMOID else _softmax(ref_logits)
    assert np.abs(role.label_probs(image_embs, text_embs) - expected).max() < TOLERANCE
    assert np.allclose(np.linalg.norm(image_embs, axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_equals_one_at_a_time(family: str, roles: dict[str, EmbedderRole]) -> None:
    role = roles[family]
    images = _images()
    batched_images, batched_texts = role.embed_images(images), role.embed_texts(TEXTS)
    single_images = np.concatenate([role.embed_images([image]) for image in images])
    single_texts = np.concatenate([role.embed_texts([text]) for text in TEXTS])
    assert np.abs(batched_images - single_images).max() < TOLERANCE
    assert np.abs(batched_texts - single_texts).max() < TOLERANCE
    assert batched_images.shape == (3, role.embedding_dim) and batched_texts.shape == (4, role.embedding_dim)


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_inputs_give_empty_arrays_of_the_embedding_width(family: str, roles: dict[str, EmbedderRole]) -> None:
    role = roles[family]
    assert role.embed_images([]).shape == (0, role.embedding_dim)
    assert role.embed_texts([]).shape == (0, role.embedding_dim)


def test_sigmoid_labels_are_judged_alone(roles: dict[str, EmbedderRole]) -> None:
    """SigLIP: adding a label changes no other label's probability; CLIP's softmax shares the mass."""
    siglip, clip = roles["siglip"], roles["clip"]
    for role, independent in ((siglip, True), (clip, False)):
        image = role.embed_images(_images()[:1])
        labels = role.embed_texts(TEXTS)
        two, four = role.label_probs(image, labels[:2]), role.label_probs(image, labels)
        assert np.allclose(two, four[:, :2], rtol=0, atol=1e-12) is independent
    probs = siglip.label_probs(siglip.embed_images(_images()[:1]), siglip.embed_texts(TEXTS))
    assert siglip.category_scores(probs, 2) == pytest.approx([probs[0, :2].max()], abs=1e-12)
    assert clip.category_scores(probs, 2) == pytest.approx([probs[0, :2].sum()], abs=1e-12)


@pytest.mark.parametrize("family", ["siglip", "siglip2", "align", "altclip", "chinese_clip"])
def test_engine_scores_equal_the_zero_shot_pipeline(
    family: str, checkpoints: dict[str, Path], tiny_dir: Path, policy: Policy
) -> None:
    """Through MODELS-style config: softmax families sum their prompts' share, SigLIP takes its best sigmoid."""
    from transformers import pipeline

    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), clip=str(checkpoints[family]), grounder="",
                                      generator="", reader="")
    engine = Engine.from_config(config)
    assert type(engine.clip) is families("embedder")[family].adapter
    classifier = pipeline("zero-shot-image-classification", model=str(checkpoints[family]))
    data = image_bytes((48, 40), seed=3)
    [analysis] = engine.analyze([PostInput(key="p1", image=data)], policy)
    image = image_decode(data).image
    for category in policy.categories:
        labels = list(category.prompts + policy.benign_prompts)
        scores = {row["label"]: row["score"] for row in classifier(image, candidate_labels=labels,
                                                                   hypothesis_template="{}")}
        own = [scores[prompt] for prompt in category.prompts]
        expected = max(own) if family in SIGMOID else sum(own)
        assert analysis.scores[category.slug] == pytest.approx(expected, abs=TOLERANCE)
    assert analysis.model_version.startswith(f"{family}:{family}@")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return result
