"""Fixtures for the engine tests: tiny checkpoints built once per session, and a test policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_engine.types import Category, Policy


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_dir: Path) -> Path:
    return tiny_dir / "clip"


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
