"""Tests for import boundaries: the web process imports the engine's light modules without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT = ["vlm_engine", "vlm_engine.types", "vlm_engine.config", "vlm_engine.imaging", "vlm_engine.loading",
         "vlm_engine.registry"]
ALL = [*LIGHT, "vlm_engine.tiny", "vlm_engine.clip", "vlm_engine.engine", "vlm_engine.cascade", "vlm_engine.reading",
       "vlm_engine.text", "vlm_engine.embedders", "vlm_engine.tiny_embedders"]


def _imported_after(modules: list[str], watched: list[str]) -> list[str]:
    script = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(sorted(w for w in {watched!r} if w in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return eval(done.stdout)  # noqa: S307 - our own subprocess prints a list literal


def test_light_modules_do_not_import_torch() -> None:
    assert _imported_after(LIGHT, ["torch", "transformers"]) == []


@pytest.mark.parametrize("module", ALL)
def test_engine_never_imports_the_web_side(module: str) -> None:
    assert _imported_after([module], ["django", "celery", "moderation", "workers"]) == []


def test_listing_the_registered_families_imports_no_torch() -> None:
    """The web process's system checks read the registry: every adapter module imports torch lazily."""
    script = ("import sys\nfrom vlm_engine.registry import KINDS, family_names\n"
              "names = [family_names(kind) for kind in KINDS]\n"
              "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
