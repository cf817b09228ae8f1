"""Tests for MaGiC decoding: the LM's own greedy output at zero weights, steered by the embedder otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlm_engine.generation import PROMPTS, conditional_caption_prompt
from vlm_engine.magic import (ANSWERS_UNAVAILABLE, MagicDecoder, MagicRole, MagicSettings, caption_start,
                              magic_spec_parse)
from vlm_engine.registry import checkpoint_family, role_create
from vlm_engine.tiny import tiny_clip_write
from vlm_engine.tiny_magic import tiny_causal_lm_write
from vlm_engine.types import EngineInputError, Policy, PostInput

pytestmark = pytest.mark.slow

RED, BLUE = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_causal_lm_write(tmp_path_factory.mktemp("tiny-magic"))


@pytest.fixture(scope="module")
def lm(lm_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(lm_dir).eval(), AutoTokenizer.from_pretrained(lm_dir)


class ColourWordEmbedder:
    """A stand-in embedder: red images match texts whose first animal is "cat", blue ones "dog"."""

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.array([[1.0, 0.0] if image.getpixel((0, 0))[0] > 128 else [0.0, 1.0] for image in images])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self._text_embedding(text) for text in texts])

    def label_logits(self, embeddings: np.ndarray, label_embeddings: np.ndarray) -> np.ndarray:
        logits: np.ndarray = 100.0 * embeddings @ label_embeddings.T
        return logits

    @staticmethod
    def _text_embedding(text: str) -> list[float]:
        animals = [word for word in text.split() if word in ("cat", "dog")]
        if not animals:
            return [0.6, 0.6]
        return [1.0, 0.0] if animals[0] == "cat" else [0.0, 1.0]


def _greedy(model: Any, ids: list[int], max_new_tokens: int) -> list[int]:
    import torch

    output = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                            do_sample=False, max_new_tokens=max_new_tokens)
    return [int(token) for token in output[0, len(ids):]]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else [tokenizer.bos_token_id]


@pytest.mark.parametrize("start", ["", "a photo of", "spam buy now"])
@pytest.mark.parametrize("k", [1, 4, 72])
def test_zero_weights_give_the_lm_greedy_output(lm: tuple[Any, Any], start: str, k: int) -> None:
    model, tokenizer = lm
    decoder = MagicDecoder(model, tokenizer, None, settings=MagicSettings(k=k, alpha=0.0, beta=0.0), device="cpu")
    ids = _ids(tokenizer, start)
    assert decoder.decode(None, ids, 12) == _greedy(model, ids, 12)


def test_the_image_weight_picks_the_candidate_the_embedder_matches(lm: tuple[Any, Any]) -> None:
    model, tokenizer = lm
    embedder = ColourWordEmbedder()
    decoder = MagicDecoder(model, tokenizer, embedder, settings=MagicSettings(k=len(tokenizer), alpha=0.0, beta=5.0),
                           device="cpu")
    ids = _ids(tokenizer, "a photo of")
    greedy = _greedy(model, ids, 8)
    cat, dog = tokenizer.convert_tokens_to_ids(["cat", "dog"])
    assert greedy[0] == dog  # the LM alone says "dog": the red image must overrule it
    for image, animal in ((RED, cat), (BLUE, dog)):
        steered = decoder.decode(embedder.embed_images([image])[0], ids, 8)
        # Once the animal is said, every candidate shares it: the image term is flat and the LM decides.
        assert steered == [animal, *_greedy(model, [*ids, animal], 7)]


def test_the_degeneration_penalty_breaks_the_lm_repeating_itself(lm: tuple[Any, Any]) -> None:
    model, tokenizer = lm
    ids = _ids(tokenizer, "")
    greedy = _greedy(model, ids, 10)
    decoder = MagicDecoder(model, tokenizer, None, settings=MagicSettings(k=8, alpha=0.6, beta=0.0), device="cpu")
    penalised = decoder.decode(None, ids, 10)
    repeats = [sum(a == b for a, b in zip(tokens, tokens[1:])) for tokens in (greedy, penalised)]
    assert repeats[0] >= 4  # the random LM's greedy output says the same word again and again
    assert repeats[1] < repeats[0]


@pytest.mark.parametrize(("prompt", "start"), [
    (PROMPTS["caption"], ""),
    (PROMPTS["detailed_caption"], ""),
    (conditional_caption_prompt("a photo of"), "a photo of"),
    (PROMPTS["ocr"], None),
    ("Is there a weapon in this image?", None),
])
def test_only_caption_prompts_are_decoded(prompt: str, start: str | None) -> None:
    assert caption_start(prompt) == start


@pytest.mark.parametrize(("spec", "error"), [
    ("gpt2?embedder=clip", "is not a MaGiC generator"),
    ("magic:gpt2", "expected magic:<causal LM>?embedder="),
    ("magic:?embedder=clip", "expected magic:<causal LM>?embedder="),
    ("magic:gpt2?embedder=clip&temperature=2", "unknown options temperature"),
    ("magic:gpt2?embedder=clip&k=0", "k must be at least 1"),
    ("magic:gpt2?embedder=clip&alpha=1.5", "alpha must lie in"),
    ("magic:gpt2?embedder=clip&beta=-1", "beta must not be negative"),
])
def test_a_malformed_spec_is_refused_with_the_reason(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("?", r"\?")):
        magic_spec_parse(spec)


def test_the_spec_names_the_lm_the_embedder_and_the_weights() -> None:
    assert magic_spec_parse("magic:/models/gpt2?embedder=openai/clip-vit-base-patch32&k=10&alpha=0&beta=1.5") == (
        "/models/gpt2", "openai/clip-vit-base-patch32", MagicSettings(k=10, alpha=0.0, beta=1.5))
    assert magic_spec_parse("magic:gpt2?embedder=clip")[2] == MagicSettings(k=45, alpha=0.1, beta=2.0)


def test_the_generator_role_captions_through_the_registry(lm_dir: Path, tmp_path: Path) -> None:
    clip_dir = tiny_clip_write(tmp_path)
    spec = f"magic:{lm_dir}?embedder={clip_dir}&k=6&alpha=0.1&beta=2.0"
    assert checkpoint_family("generator", spec).adapter is MagicRole
    role = role_create("generator", spec, local_files_only=True)
    assert isinstance(role, MagicRole)
    assert role.real is False
    assert role.version.startswith("magic:causal-lm@") and "k=6,alpha=0.1,beta=2.0;clip:clip@" in role.version
    images = [RED, RED, BLUE, BLUE]
    prompts = [PROMPTS["caption"], "Is there a weapon in this image?", conditional_caption_prompt("a photo of"),
               PROMPTS["caption"]]
    batched = role.generate(images, prompts, max_new_tokens=6)
    assert batched == [role.generate([image], [prompt], max_new_tokens=6)[0] for image, prompt in zip(images, prompts)]
    assert batched[1] == ""
    assert batched[2].startswith("a photo of ") and batched[0] and batched[3]
    assert role.answers_unavailable == ANSWERS_UNAVAILABLE
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        role.generate([RED, BLUE], [PROMPTS["caption"]])


@pytest.fixture
def magic_engine(tiny_dir: Path, lm_dir: Path) -> Any:
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine

    spec = f"magic:{lm_dir}?embedder={tiny_dir / 'clip'}&k=6"
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", verifier="", generator=spec,
                                      look_closer=0.0, max_new_tokens=6)
    return Engine.from_config(config)


def test_the_engine_captions_with_magic_and_refuses_questions(magic_engine: Any, policy: Policy) -> None:
    from tests.vlm_engine.sample_images import image_bytes

    post = PostInput(key="p1", image=image_bytes((32, 32), seed=2), text="hello")
    [analysis] = magic_engine.analyze([post], policy)
    [caption] = magic_engine.caption([(post, None)])
    # Looked at closer, the post gets a caption and nothing a text-only LM cannot give.
    assert (analysis.caption, analysis.answers, analysis.ocr_text, analysis.rationale) == (caption, (), None, None)
    assert caption
    [steered] = magic_engine.caption([(post, "a photo of")])
    assert steered.startswith("a photo of ")
    with pytest.raises(EngineInputError, match="cannot answer questions") as raised:
        magic_engine.ask([(post, "Is there a weapon?")])
    assert raised.value.code == "role_unavailable"


def test_loading_fetches_and_judges_the_lm_and_the_embedder(tiny_dir: Path, lm_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from vlm_engine import loading

    checked: list[str] = []
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: checked.append(name) or True)
    spec = f"magic:{lm_dir}?embedder=openai/clip-vit-base-patch32"
    overrides = {"grounder": "", "generator": spec, "verifier": ""}
    config, notice = loading.engine_config_resolve("small", tiny_dir=str(tiny_dir), overrides=overrides)
    assert (config.generator, notice) == (spec, None)
    assert checked == ["openai/clip-vit-base-patch32", str(lm_dir), "openai/clip-vit-base-patch32"]
    # The tiny LM is random, so the generator's captions are no finding, though the embedder is real.
    assert loading.config_roles_real(config) == {"embedder": True, "generator": False, "reader": True, "text": True}
