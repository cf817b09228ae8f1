"""Fixtures for the engine tests: tiny checkpoints built once per session, and a test policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_engine.reading import OcrReaderRole
from vlm_engine.text import PACKAGED_MINILM, TextRole
from vlm_engine.types import Category, Policy


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_dir: Path) -> Path:
    return tiny_dir / "clip"


@pytest.fixture(scope="session")
def reader() -> OcrReaderRole:
    """RapidOCR with its packaged models, loaded once per session."""
    return OcrReaderRole.load("rapidocr")


@pytest.fixture(scope="session")
def minilm() -> TextRole:
    """The packaged MiniLM, hash-checked and loaded once per session."""
    return TextRole.load(PACKAGED_MINILM, device="cpu")


@pytest.fixture
def policy() -> Policy:
    return Policy(
        version="test-1",
        categories=(
            Category(slug="violence", name="Violence", prompts=("a photo of violence", "blood and gore")),
            Category(slug="spam", name="Spam", prompts=("an advert for a scam",)),
            Category(slug="drugs", name="Drugs", prompts=("a photo of drugs", "a knife", "a gun")),
        ),
        benign_prompts=("a normal everyday photo", "a photo of a cat"),
    )
