"""The role registry: look-up by kind and model_type, the factory, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlm_engine import registry
from vlm_engine.embedders import ClipRole, EmbedderRole
from vlm_engine.generation import GeneratorRole
from vlm_engine.grounding import GrounderRole
from vlm_engine.reading import OcrReaderRole
from vlm_engine.registry import (KINDS, UnknownFamily, checkpoint_family, checkpoint_model_type, families,
                                 family_find, family_names, role_create, role_register)
from vlm_engine.text import PACKAGED_MINILM, TextRole
from vlm_engine.verification import VerifierRole


def test_kinds_and_their_families() -> None:
    assert KINDS == ("embedder", "verifier", "grounder", "generator", "reader", "text")
    assert list(families("embedder")) == ["clip", "altclip", "chinese_clip", "siglip", "siglip2", "align", "flava"]
    assert list(families("verifier")) == ["blip", "bridgetower", "vilt", "blip-2", "flava"]
    assert list(families("grounder")) == ["owlv2"]
    assert list(families("generator")) == ["idefics3", "smolvlm", "blip", "git", "vision-encoder-decoder", "blip-2", "idefics"]
    assert family_names("reader") == ["rapidocr"]
    assert family_names("text") == ["*", PACKAGED_MINILM]


def test_unknown_model_type_names_the_registered_ones() -> None:
    with pytest.raises(UnknownFamily) as raised:
        family_find("embedder", "blip")
    assert str(raised.value) == ("no embedder family is registered for model_type 'blip'; registered: "
                                 "clip, altclip, chinese_clip, siglip, siglip2, align, flava")
    with pytest.raises(UnknownFamily, match=r"model_type 'clip'; registered: blip, bridgetower, vilt, blip-2, flava$"):
        family_find("verifier", "clip")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown role kind 'captioner'; expected one of embedder, verifier"):
        families("captioner")


def test_factory_picks_the_adapter_from_config_json(tiny_dir: Path) -> None:
    assert checkpoint_model_type(str(tiny_dir / "owlv2")) == "owlv2"
    assert checkpoint_family("grounder", str(tiny_dir / "owlv2")).adapter is GrounderRole
    clip = role_create("embedder", str(tiny_dir / "clip"), local_files_only=True)
    assert type(clip) is ClipRole and isinstance(clip, EmbedderRole) and clip.kind == "embedder"
    assert type(role_create("generator", str(tiny_dir / "generator"), local_files_only=True)) is GeneratorRole
    assert type(role_create("verifier", str(tiny_dir / "verifier"), local_files_only=True)) is VerifierRole


def test_a_checkpoint_of_another_kind_is_refused_before_loading(tiny_dir: Path) -> None:
    with pytest.raises(UnknownFamily, match=r"no grounder family is registered for model_type 'clip'; "
                                            r"registered: owlv2$"):
        role_create("grounder", str(tiny_dir / "clip"))
    # Loading through the adapter itself checks too: OWL-ViT's boxes would map back wrong in the OWLv2 role.
    with pytest.raises(UnknownFamily, match=r"is a clip model; GrounderRole takes owlv2"):
        GrounderRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")


def test_plain_names_need_no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert checkpoint_family("reader", "rapidocr").adapter is OcrReaderRole
    assert checkpoint_family("text", PACKAGED_MINILM).adapter is TextRole
    # The text role takes any encoder: a hub id is not looked up (no network) to find its family.
    monkeypatch.setattr(registry, "checkpoint_model_type", lambda *args, **kwargs: pytest.fail("read config"))
    assert checkpoint_family("text", "sentence-transformers/all-mpnet-base-v2").adapter is TextRole


def test_model_type_read_from_a_local_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    assert checkpoint_family("embedder", str(tmp_path)).name == "siglip2"


def test_register_sets_the_contract_attributes_and_refuses_clashes() -> None:
    saved = {kind: dict(table) for kind, table in registry._FAMILIES.items()}
    try:
        @role_register("verifier", "x_itm", auto_class="BlipForImageTextRetrieval", version_prefix="itm")
        class Verifier(registry.CheckpointRole):
            pass

        assert (Verifier.kind, Verifier.auto_class, Verifier.version_prefix) == (
            "verifier", "BlipForImageTextRetrieval", "itm")
        assert family_find("verifier", "x_itm").adapter is Verifier
        with pytest.raises(ValueError, match=r"verifier 'x_itm' is already registered to Verifier"):
            role_register("verifier", "x_itm")(type("Other", (), {}))
        with pytest.raises(ValueError, match=r"unknown role kind 'scorer'"):
            role_register("scorer", "x")
        with pytest.raises(ValueError, match=r"needs at least one model_type or name"):
            role_register("verifier")
    finally:
        registry._FAMILIES.clear()
        registry._FAMILIES.update(saved)
