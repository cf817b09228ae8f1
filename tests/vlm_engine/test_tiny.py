"""Tests for the tiny offline checkpoints: deterministic, idempotent, loadable the ordinary way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlm_engine.tiny import TINY_WORDS, tiny_clip_write

pytestmark = pytest.mark.slow


def test_tiny_checkpoints_are_deterministic_and_idempotent(tiny_clip_dir: Path, tmp_path: Path) -> None:
    again = tiny_clip_write(tmp_path)
    assert (again / "model.safetensors").read_bytes() == (tiny_clip_dir / "model.safetensors").read_bytes()
    mtime = (again / "model.safetensors").stat().st_mtime_ns
    assert tiny_clip_write(tmp_path) == again
    assert (again / "model.safetensors").stat().st_mtime_ns == mtime


def test_tiny_checkpoint_loads_through_auto_classes(tiny_clip_dir: Path) -> None:
    from transformers import AutoModel, AutoProcessor, AutoTokenizer, CLIPModel

    model = AutoModel.from_pretrained(str(tiny_clip_dir))
    processor = AutoProcessor.from_pretrained(str(tiny_clip_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_clip_dir))
    assert type(model) is CLIPModel
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    assert tokenizer.convert_ids_to_tokens(tokenizer("a photo")["input_ids"]) == [
        "<|startoftext|>",
        "a</w>",
        "photo</w>",
        "<|endoftext|>",
    ]
    assert model.config.text_config.eos_token_id == tokenizer.eos_token_id


def test_tiny_module_command_prints_path_and_matches(tiny_clip_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vlm_engine.tiny", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert done.stdout == f"{tmp_path}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "generator", "owlv2", "verifier"]
    # Another process writes the very same files: nothing depends on hash seeds or tie order.
    for name in ("tokenizer.json", "config.json", "model.safetensors"):
        assert (tmp_path / "clip" / name).read_bytes() == (tiny_clip_dir / name).read_bytes(), name


def test_tiny_words_are_single_tokens(tiny_clip_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_clip_dir))
    lengths = {word: len(tokenizer(word)["input_ids"]) for word in TINY_WORDS}
    assert lengths == dict.fromkeys(TINY_WORDS, 3)  # <|startoftext|> word <|endoftext|>


def test_tiny_checkpoints_are_marked_random_and_load_as_not_real(tiny_dir: Path, tmp_path: Path) -> None:
    from vlm_engine.checkpoints import RANDOM_WEIGHTS_MARKER, checkpoint_is_real
    from vlm_engine.clip import ClipRole

    assert [checkpoint_is_real(str(tiny_dir / sub)) for sub in ("clip", "owlv2", "generator")] == [False] * 3
    assert json.loads((tiny_dir / "clip" / RANDOM_WEIGHTS_MARKER).read_text()) == {
        "random_weights": True, "model_type": "clip"}
    # The same files under another name are still random: the marker decides, not the path.
    renamed = tmp_path / "openai-clip-vit-base-patch32"
    shutil.copytree(tiny_dir / "clip", renamed)
    assert ClipRole.load(str(renamed), device="cpu", dtype="float32").real is False
    (renamed / RANDOM_WEIGHTS_MARKER).unlink()
    assert ClipRole.load(str(renamed), device="cpu", dtype="float32").real is True


def test_an_unmarked_older_tiny_checkpoint_is_rewritten_with_the_marker(tmp_path: Path) -> None:
    from vlm_engine.checkpoints import RANDOM_WEIGHTS_MARKER

    clip = tiny_clip_write(tmp_path)
    (clip / RANDOM_WEIGHTS_MARKER).unlink()
    assert (tiny_clip_write(tmp_path) / RANDOM_WEIGHTS_MARKER).is_file()
