"""Tests for the tiny offline checkpoints: deterministic, idempotent, loadable the ordinary way."""

from __future__ import annotations

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "generator", "owlv2"]
    # Another process writes the very same files: nothing depends on hash seeds or tie order.
    for name in ("tokenizer.json", "config.json", "model.safetensors"):
        assert (tmp_path / "clip" / name).read_bytes() == (tiny_clip_dir / name).read_bytes(), name


def test_tiny_words_are_single_tokens(tiny_clip_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_clip_dir))
    lengths = {word: len(tokenizer(word)["input_ids"]) for word in TINY_WORDS}
    assert lengths == dict.fromkeys(TINY_WORDS, 3)  # <|startoftext|> word <|endoftext|>
