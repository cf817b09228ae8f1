"""One worker step in-process, with the real tiny engine: batching, bad inputs, device faults."""
from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from django.core.files.base import ContentFile

from moderation.models import Analysis, Post, PostEvent, PostState
from tests.factories import PostFactory, image_bytes
from vlm_engine.engine import Engine
from workers.pipeline import batch_analyze, batches_drain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


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


def test_drain_claims_and_decodes_the_next_batch_while_one_runs(engine, monkeypatch):  # type: ignore[no-untyped-def]
    for i in range(7):
        post_with_image(image_bytes("JPEG", color=(i * 30, 9, 9)))
    analyze, seen = engine.analyze, []
    decoding_threads = set()
    decode = engine.decode

    def spy_decode(posts):  # type: ignore[no-untyped-def]
        decoding_threads.add(threading.current_thread().name)
        return decode(posts)

    def spy_analyze(posts, policy, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((len(posts), kwargs.get("decoded") is not None,
                     Post.objects.filter(state=PostState.ANALYZING).count()))
        return analyze(posts, policy, **kwargs)

    monkeypatch.setattr(engine, "decode", spy_decode)
    monkeypatch.setattr(engine, "analyze", spy_analyze)
    assert batches_drain(engine=lambda: engine, batch_size=3, worker="w") == 7

    # While a full batch runs, the next one is already claimed, and its images were decoded
    # in the decode-ahead thread, not in the worker's own.
    assert seen == [(3, True, 6), (3, True, 4), (1, True, 1)]
    assert decoding_threads and all(name.startswith("decode-ahead") for name in decoding_threads)
    assert all("decode" in a.timings_ms for a in Analysis.objects.all())


def test_no_claim_ahead_of_a_post_being_retried(engine, monkeypatch):  # type: ignore[no-untyped-def]
    retried = PostFactory(attempts=1)
    PostFactory.create_batch(2)
    analyze, in_flight = engine.analyze, []

    def spy_analyze(posts, policy, **kwargs):  # type: ignore[no-untyped-def]
        in_flight.append(sorted(str(p.pk) for p in Post.objects.filter(state=PostState.ANALYZING)))
        return analyze(posts, policy, **kwargs)

    monkeypatch.setattr(engine, "analyze", spy_analyze)
    batches_drain(engine=lambda: engine, batch_size=1, worker="w")

    assert in_flight[0] == [str(retried.pk)]


def test_a_failed_batch_gives_back_the_batch_claimed_ahead_uncharged(engine, monkeypatch):  # type: ignore[no-untyped-def]
    PostFactory.create_batch(4)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("a bug")

    monkeypatch.setattr(engine, "analyze", broken)
    with pytest.raises(ValueError):
        batches_drain(engine=lambda: engine, batch_size=2, worker="w")

    states = sorted((p.state, p.attempts) for p in Post.objects.all())
    # The failing batch waits for the sweeper; the batch claimed ahead is queued as if never claimed.
    assert states == [("analyzing", 1), ("analyzing", 1), ("queued", 0), ("queued", 0)]


def test_a_corrupt_image_decoded_ahead_fails_only_its_post(engine):  # type: ignore[no-untyped-def]
    good = [post_with_image(image_bytes("JPEG")) for _ in range(3)]
    bad = post_with_image(b"not an image at all")

    assert batches_drain(engine=lambda: engine, batch_size=2, worker="w") == 4

    bad.refresh_from_db()
    assert bad.state == PostState.FAILED and "image" in bad.last_error
    assert Analysis.objects.filter(post__in=good).count() == 3


def test_drain_goes_on_after_a_retried_post_claimed_alone(engine):  # type: ignore[no-untyped-def]
    PostFactory(attempts=1)
    PostFactory(attempts=2)
    PostFactory.create_batch(3)

    assert batches_drain(engine=lambda: engine, batch_size=4, worker="w") == 5
    assert Post.objects.filter(state=PostState.QUEUED).count() == 0


def test_warm_shutdown_finishes_the_batch_and_gives_back_the_one_claimed_ahead_uncharged(engine, monkeypatch):  # type: ignore[no-untyped-def]
    PostFactory.create_batch(7)
    analyze, stop = engine.analyze, []

    def analyze_then_sigterm(posts, policy, **kwargs):  # type: ignore[no-untyped-def]
        stop.append(True)  # SIGTERM arrives while the first batch runs
        return analyze(posts, policy, **kwargs)

    monkeypatch.setattr(engine, "analyze", analyze_then_sigterm)
    assert batches_drain(engine=lambda: engine, batch_size=3, worker="w", stopping=lambda: bool(stop)) == 3

    states = sorted((p.state in {"allowed", "needs_review", "removed"}, p.state, p.attempts) for p in Post.objects.all())
    assert [(final, attempts) for final, _, attempts in states] == [(False, 0)] * 4 + [(True, 1)] * 3
    assert {s for final, s, _ in states if not final} == {"queued"}
    assert PostEvent.objects.filter(detail__reason="returned unprocessed").count() == 3


def test_a_claim_ahead_counts_its_attempt_only_when_its_batch_starts(engine, monkeypatch):  # type: ignore[no-untyped-def]
    PostFactory.create_batch(4)
    analyze, attempts_ahead = engine.analyze, []

    def spy(posts, policy, **kwargs):  # type: ignore[no-untyped-def]
        keys = {p.key for p in posts}
        attempts_ahead.append(sorted(p.attempts for p in Post.objects.filter(state="analyzing")
                                     if str(p.pk) not in keys))
        return analyze(posts, policy, **kwargs)

    monkeypatch.setattr(engine, "analyze", spy)
    assert batches_drain(engine=lambda: engine, batch_size=2, worker="w") == 4

    assert attempts_ahead == [[0, 0], []]
    assert sorted(p.attempts for p in Post.objects.all()) == [1, 1, 1, 1]


def test_a_wakeup_received_during_a_warm_shutdown_claims_nothing(engine):  # type: ignore[no-untyped-def]
    PostFactory.create_batch(2)

    assert batches_drain(engine=lambda: engine, batch_size=2, worker="w", stopping=lambda: True) == 0
    assert sorted((p.state, p.attempts) for p in Post.objects.all()) == [("queued", 0), ("queued", 0)]


def test_the_last_batch_of_a_wakeup_leaves_nothing_claimed(engine, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("workers.pipeline.MAX_BATCHES_PER_WAKEUP", 2)
    PostFactory.create_batch(3)
    analyze = engine.analyze

    def nan_for_all(posts, policy, **kwargs):  # type: ignore[no-untyped-def]
        return [replace(r, scores={"hate": float("nan")}) for r in analyze(posts, policy, **kwargs)]

    monkeypatch.setattr(engine, "analyze", nan_for_all)
    assert batches_drain(engine=lambda: engine, batch_size=3, worker="w") == 4

    assert Post.objects.filter(state=PostState.ANALYZING).count() == 0
    assert sorted(p.attempts for p in Post.objects.all()) == [1, 1, 2]


def test_drain_reads_the_next_batch_s_text_ahead_in_the_decode_thread(  # type: ignore[no-untyped-def]
        tiny_dir, monkeypatch):
    from bench.memes import meme_set
    from vlm_engine.config import EngineConfig

    memes = meme_set(2)
    posts = [post_with_image(m.image) for m in memes]
    engine = Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="",
                                                         reader="rapidocr", text=""))
    reading_threads = []
    read = engine.reader.read

    def spy_read(images):  # type: ignore[no-untyped-def]
        reading_threads.append(threading.current_thread().name)
        return read(images)

    monkeypatch.setattr(engine.reader, "read", spy_read)
    assert batches_drain(engine=lambda: engine, batch_size=2, worker="w") == 4

    assert len(reading_threads) == 2 and all(name.startswith("decode-ahead") for name in reading_threads)
    analyses = {a.post_id: a for a in Analysis.objects.all()}
    assert [analyses[p.pk].explanation["ocr_text"].split() for p in posts] == [list(m.words) for m in memes]
    assert all(analyses[p.pk].timings_ms["read"] > 0 for p in posts)
