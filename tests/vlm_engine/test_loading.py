"""Tests for resolving a loadable engine config, including the offline fallback to tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_engine import loading
from vlm_engine.config import EngineConfig

TINY_NOTICE = "using the random-weight 'tiny' checkpoints — verdicts are meaningless."


def test_resolve_tiny_writes_checkpoints_and_warns(tmp_path: Path) -> None:
    config, notice = loading.engine_config_resolve("tiny", tiny_dir=str(tmp_path), overrides={"batch_size": "4"})
    assert config == EngineConfig(profile="tiny", clip=f"{tmp_path}/clip", batch_size=4, tiny_dir=str(tmp_path))
    assert notice == f"NOTICE: {TINY_NOTICE}"
    assert (tmp_path / "clip" / "model.safetensors").is_file()


def test_resolve_falls_back_to_tiny_when_offline(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: False)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s: False)
    config, notice = loading.engine_config_resolve(
        "small", tiny_dir=str(tiny_dir), device="cpu", overrides={"text_weight": "0.25"}
    )
    assert config == EngineConfig(profile="tiny", clip=f"{tiny_dir}/clip", text_weight=0.25, tiny_dir=str(tiny_dir))
    assert notice == (
        "NOTICE: the 'small' models could not be loaded (openai/clip-vit-base-patch32 is not in the local "
        f"cache and huggingface.co is unreachable); {TINY_NOTICE}"
    )


def test_resolve_falls_back_to_tiny_when_download_fails(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def download_fails(name: str) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: False)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s: True)
    monkeypatch.setattr(loading, "checkpoint_download", download_fails)
    config, notice = loading.engine_config_resolve("large", tiny_dir=str(tiny_dir))
    assert config.profile == "tiny"
    assert notice == (
        "NOTICE: the 'large' models could not be loaded (downloading openai/clip-vit-large-patch14-336 "
        f"failed: connection reset); {TINY_NOTICE}"
    )


def test_resolve_uses_local_checkpoint_without_network(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(timeout_s: float) -> bool:
        raise AssertionError("a local checkpoint must not probe the network")

    monkeypatch.setattr(loading, "hub_reachable", no_network)
    clip = str(tiny_dir / "clip")
    config, notice = loading.engine_config_resolve("small", tiny_dir=str(tiny_dir), overrides={"clip": clip})
    assert (config, notice) == (EngineConfig(profile="small", clip=clip, tiny_dir=str(tiny_dir)), None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, "unknown or non-overridable engine setting 'colour'"),
        ({"profile": "large"}, "unknown or non-overridable engine setting 'profile'"),
        ({"batch_size": "four"}, "engine setting batch_size='four' is not a valid int"),
        ({"dtype": "int8"}, "unknown dtype 'int8'; expected one of float32, bfloat16, float16"),
    ],
)
def test_resolve_rejects_bad_overrides(overrides: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        loading.engine_config_resolve("small", tiny_dir=str(tmp_path), overrides=overrides)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("name", "expected"),
    [("/nonexistent/checkpoint", False), ("not a repo id!", False)],
)
def test_checkpoint_cached_missing(name: str, expected: bool) -> None:
    assert loading.checkpoint_cached(name) is expected


def test_checkpoint_cached_local_dir(tiny_dir: Path) -> None:
    assert loading.checkpoint_cached(str(tiny_dir / "clip")) is True


def test_hub_reachable_respects_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.hub_reachable(0.1) is False
