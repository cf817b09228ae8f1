"""``manage.py check`` warns about what would stop a worker on this host from building its engine."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from moderation.conf import moderation_settings, tiny_checkpoint_dir_default


def _worker_warnings() -> list[tuple[str, str]]:
    return [(m.id, m.msg) for m in run_checks() if m.id in {"moderation.W020", "moderation.W021"}]


def test_cuda_device_on_a_host_without_cuda_warns() -> None:
    import torch

    from vlm_engine.devices import device_problem

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    with override_settings(MODERATION={"DEVICE": "cuda"}):
        warnings = _worker_warnings()

    assert warnings == [("moderation.W020", f"MODERATION['DEVICE'] = 'cuda': {device_problem('cuda')}. "
                                            "A worker started here fails every post.")]


def test_unwritable_tiny_dir_warns(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with override_settings(MODERATION={"TINY_CHECKPOINT_DIR": str(blocker / "tiny")}):
        [(check_id, message)] = _worker_warnings()

    assert check_id == "moderation.W021"
    assert message.startswith(f"MODERATION['TINY_CHECKPOINT_DIR'] = '{blocker / 'tiny'}' cannot be created")


def test_cpu_device_and_default_tiny_dir_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with override_settings(MODERATION={"DEVICE": "cpu"}):
        assert moderation_settings.TINY_CHECKPOINT_DIR == str(tmp_path / "cache" / "django-vlm-moderation" / "tiny-models")
        assert _worker_warnings() == []


def test_tiny_dir_defaults_to_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/newcomer")

    assert tiny_checkpoint_dir_default() == "/home/newcomer/.cache/django-vlm-moderation/tiny-models"
