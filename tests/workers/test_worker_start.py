"""Worker start-up with real worker processes: failures are told at start and reach the posts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from moderation.models import Post, PostState
from moderation.services.posts import post_submit
from tests.factories import UserFactory
from tests.workers.conftest import wait_until
from vlm_engine.config import TINY_SUBDIRS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED}
CANNOT = "This worker cannot analyse anything: "


def test_cuda_device_without_cuda_fails_fast_and_posts_end_failed(start_worker):  # type: ignore[no-untyped-def]
    import torch

    from vlm_engine.devices import device_problem

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA: the device is usable")
    reason = f"MODERATION['DEVICE'] = 'cuda': {device_problem('cuda')}"
    worker = start_worker(MODERATION_DEVICE="cuda")
    # Told at start, before any post exists.
    wait_until(lambda: "ready." in worker.log(), timeout=180, interval=0.2, message=f"worker start:\n{worker.log()}")
    assert CANNOT + reason in worker.log()

    post = post_submit(client=UserFactory(username="no-gpu"), text="analysed on a host without CUDA")[0]

    wait_until(lambda: Post.objects.get(pk=post.pk).state == PostState.FAILED, timeout=180, interval=0.25,
               message=f"the post failed; log:\n{worker.log()[-3000:]}")
    post.refresh_from_db()
    assert post.attempts == 3
    assert post.last_error == f"EngineUnavailable: {reason}"
    assert worker.proc is not None and worker.proc.poll() is None


def test_unwritable_tiny_dir_reaches_the_post(start_worker, tmp_path: Path):  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    worker = start_worker(MODERATION_TINY_DIR=str(blocker / "tiny"), MODERATION_PROFILE="tiny",
                          MODERATION_SETTINGS_JSON=json.dumps({"MAX_ATTEMPTS": 2}))
    wait_until(lambda: "ready." in worker.log(), timeout=180, interval=0.2, message=f"worker start:\n{worker.log()}")
    assert CANNOT + "building the engine failed: " in worker.log()

    post = post_submit(client=UserFactory(username="bad-dir"), text="no checkpoints")[0]

    wait_until(lambda: Post.objects.get(pk=post.pk).state == PostState.FAILED, timeout=180, interval=0.25,
               message=f"the post failed; log:\n{worker.log()[-3000:]}")
    post.refresh_from_db()
    assert post.attempts == 2
    assert post.last_error.startswith("EngineUnavailable: building the engine failed: ")
    assert str(blocker) in post.last_error


def test_offline_worker_without_tiny_dir_uses_the_cache_dir(start_worker, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The README's settings name no TINY_CHECKPOINT_DIR: the offline fallback writes to the user's cache."""
    worker = start_worker(MODERATION_PROFILE="small", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
                          XDG_CACHE_HOME=str(tmp_path / "cache"),
                          MODERATION_SETTINGS_JSON=json.dumps({"TINY_CHECKPOINT_DIR": None}))

    post = post_submit(client=UserFactory(username="offline"), text="no tiny dir configured")[0]

    wait_until(lambda: Post.objects.get(pk=post.pk).state in FINAL, timeout=300, interval=0.25,
               message=f"a verdict; log:\n{worker.log()[-3000:]}")
    written = tmp_path / "cache" / "django-vlm-moderation" / "tiny-models"
    assert {p.name for p in written.iterdir()} == set(TINY_SUBDIRS.values())
    assert CANNOT not in worker.log()
