"""Tests for EngineConfig: profile defaults and validation."""

from __future__ import annotations

from typing import Any

import pytest

from vlm_engine.config import EngineConfig


@pytest.mark.parametrize(
    ("profile", "clip"),
    [
        ("tiny", "/models/tiny/clip"),
        ("small", "openai/clip-vit-base-patch32"),
        ("large", "openai/clip-vit-large-patch14-336"),
    ],
)
def test_for_profile_defaults(profile: str, clip: str) -> None:
    config = EngineConfig.for_profile(profile, tiny_dir="/models/tiny")
    assert config == EngineConfig(profile=profile, clip=clip, tiny_dir="/models/tiny")
    assert (config.device, config.dtype, config.batch_size, config.text_weight) == ("cpu", "float32", 16, 0.5)


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
