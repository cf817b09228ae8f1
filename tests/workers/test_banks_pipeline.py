"""The worker with the real tiny engine: known content is decided before, and instead of, the models."""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from moderation.models import Analysis, Post, PostState
from moderation.selectors.banks import entry_index
from moderation.services.banks import bank_create, bank_entry_add
from tests.factories import PostFactory
from vlm_engine.pdq import pdq_compute
from workers.pipeline import batch_analyze, batches_drain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path / "media"
    entry_index.reset()


def meme_jpeg(seed: int) -> bytes:
    blocks = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(blocks).resize((160, 120), Image.Resampling.BILINEAR).save(out, format="JPEG")
    return out.getvalue()


def post_with(data: bytes) -> Post:
    post = PostFactory()
    post.image.save("x.jpg", ContentFile(data), save=True)
    return post


def test_a_batch_of_known_content_never_runs_the_models(engine, monkeypatch):  # type: ignore[no-untyped-def]
    bank = bank_create(name="known")
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(meme_jpeg(1)).hex)
    post = post_with(meme_jpeg(1))

    def no_models(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the models were run")

    monkeypatch.setattr(engine, "analyze", no_models)

    assert batch_analyze(engine=lambda: engine, batch_size=4, worker="w") == 1
    assert Post.objects.get(pk=post.pk).state == PostState.REMOVED


@pytest.mark.parametrize("drain", [False, True], ids=["batch", "decode-ahead"])
def test_a_mixed_batch_sends_only_unknown_posts_to_the_models(engine, drain):  # type: ignore[no-untyped-def]
    bank = bank_create(name="known", action="allow")
    bank_entry_add(bank=bank, pdq_hash=pdq_compute(meme_jpeg(2)).hex)
    known = post_with(meme_jpeg(2))
    unknown = [post_with(meme_jpeg(3)), PostFactory()]
    calls: list[list[str]] = []
    original = engine.analyze

    def counting(inputs, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append([i.key for i in inputs])
        return original(inputs, *args, **kwargs)

    engine.analyze = counting
    try:
        if drain:
            batches_drain(engine=lambda: engine, batch_size=3, worker="w")
        else:
            batch_analyze(engine=lambda: engine, batch_size=3, worker="w")
    finally:
        del engine.analyze

    assert calls == [[str(p.pk) for p in sorted(unknown, key=lambda p: p.created_at)]]
    assert Analysis.objects.get(post=known).scoring == "bank"
    assert Post.objects.get(pk=known.pk).state == PostState.ALLOWED
    assert Analysis.objects.filter(post__in=unknown).exclude(scoring="bank").count() == 2
    assert Post.objects.get(pk=unknown[0].pk).pdq_quality == 100
