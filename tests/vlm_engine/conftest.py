"""Fixtures for the engine tests: tiny checkpoints built once per session, and a test policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlm_engine.types import Category, Policy


@pytest.fixture(autouse=True)
def _media_root() -> None:
    """Shadows the suite's autouse MEDIA_ROOT fixture: the engine never touches Django settings,
    so these tests also run without Django (`-p no:django`)."""


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh tiny checkpoints per session, so a stale `var/tiny-models` never hides a change to tiny.py."""
    from vlm_engine.tiny import tiny_checkpoints_write

    directory = tmp_path_factory.mktemp("tiny")
    tiny_checkpoints_write(directory)
    return directory


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
