"""One worker step in-process, with the real tiny engine: batching, bad inputs, device faults."""
from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from moderation.models import Analysis, Post, PostState
from tests.factories import PostFactory, image_bytes
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from workers.pipeline import batch_analyze, batches_drain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine(tiny_dir):  # type: ignore[no-untyped-def]
    return Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir)))


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"


def post_with_image(data: bytes) -> Post:
    post = PostFactory()
    post.image.save("x.jpg", ContentFile(data), save=True)
    return post


def test_batch_analyzes_every_claimed_post(engine):  # type: ignore[no-untyped-def]
    posts = [post_with_image(image_bytes("JPEG", color=(i * 40, 0, 0))) for i in range(3)] + [PostFactory()]

    claimed = batch_analyze(engine=lambda: engine, batch_size=8, worker="w")

    assert claimed == 4
    assert Analysis.objects.count() == 4
    assert {p.state for p in Post.objects.all()} <= {"allowed", "needs_review", "removed"}
    assert Analysis.objects.filter(post=posts[-1]).get().image_embedding is None


def test_a_corrupt_stored_image_fails_only_its_post(engine):  # type: ignore[no-untyped-def]
    good = [post_with_image(image_bytes("JPEG")) for _ in range(2)]
    bad = post_with_image(b"not an image at all")

    batch_analyze(engine=lambda: engine, batch_size=8, worker="w")

    bad.refresh_from_db()
    assert bad.state == PostState.FAILED and "image" in bad.last_error
    assert Analysis.objects.filter(post__in=good).count() == 2


def test_device_fault_requeues_the_batch_with_the_attempt_counted(engine, monkeypatch, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_ATTEMPTS": 2}
    post = PostFactory()

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(engine, "analyze", crash)
    batch_analyze(engine=lambda: engine, batch_size=8, worker="w")
    after_first = Post.objects.get(pk=post.pk).state
    batch_analyze(engine=lambda: engine, batch_size=8, worker="w")

    post.refresh_from_db()
    assert (after_first, post.state, post.attempts) == ("queued", "failed", 2)
    assert post.last_error.startswith("RuntimeError: CUDA error")


def test_drain_does_not_load_the_engine_when_idle():  # type: ignore[no-untyped-def]
    def never() -> Engine:
        raise AssertionError("engine loaded with nothing to do")

    assert batches_drain(engine=never, batch_size=4, worker="w") == 0


def test_drain_claims_batch_after_batch(engine):  # type: ignore[no-untyped-def]
    PostFactory.create_batch(7)

    assert batches_drain(engine=lambda: engine, batch_size=3, worker="w") == 7
    assert Post.objects.filter(state=PostState.QUEUED).count() == 0
