"""Claiming, recording, failing and sweeping posts: the state machine of the pipeline."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from moderation.models import Analysis, Post, PostEvent, PostState
from moderation.services.analysis import (analysis_decide, analysis_record_batch, post_attempt_fail,
                                          post_claim_batch, post_release_worker_claims, post_sweep)
from moderation.services.policies import policy_active, policy_for_engine
from tests.factories import PostFactory
from vlm_engine.types import Analysis as EngineAnalysis

pytestmark = pytest.mark.django_db


def engine_result(post: Post, **scores: float) -> EngineAnalysis:
    return EngineAnalysis(key=str(post.pk), scores=scores, image_embedding=None,
                          text_embedding=(0.6, 0.8), model_version="clip:test", timings_ms={"embed": 1.0})


def states(*posts: Post) -> list[str]:
    return [Post.objects.get(pk=p.pk).state for p in posts]


def test_claim_takes_oldest_queued_posts_up_to_limit():  # type: ignore[no-untyped-def]
    now = timezone.now()
    posts = [PostFactory(created_at=now - timedelta(minutes=10 - i)) for i in range(3)]

    token, claimed = post_claim_batch(limit=2, worker="w1")

    assert [p.pk for p in claimed] == [posts[0].pk, posts[1].pk]
    assert all(p.claim_token == token and p.attempts == 1 and p.claimed_by == "w1" for p in claimed)
    assert states(*posts) == ["analyzing", "analyzing", "queued"]


def test_a_retried_post_is_claimed_alone_before_fresh_ones():  # type: ignore[no-untyped-def]
    now = timezone.now()
    fresh = [PostFactory(created_at=now - timedelta(minutes=9 - i)) for i in range(3)]
    retried = PostFactory(attempts=1, created_at=now)

    _, first = post_claim_batch(limit=8, worker="w")
    _, second = post_claim_batch(limit=8, worker="w")

    assert [p.pk for p in first] == [retried.pk]
    assert [p.pk for p in second] == [p.pk for p in fresh]


def test_second_claim_never_takes_a_claimed_post():  # type: ignore[no-untyped-def]
    PostFactory.create_batch(3)

    _, first = post_claim_batch(limit=2, worker="w1")
    _, second = post_claim_batch(limit=5, worker="w2")
    _, third = post_claim_batch(limit=5, worker="w3")

    assert {p.pk for p in first}.isdisjoint({p.pk for p in second})
    assert len(first) + len(second) == 3 and third == []


def test_record_writes_one_analysis_and_final_state():  # type: ignore[no-untyped-def]
    post = PostFactory()
    token, _ = post_claim_batch(limit=1, worker="w1")

    analyses = analysis_record_batch(token=token, policy=policy_active(), worker="w1",
                                     results=[engine_result(post, hate=0.95, harassment=0.1)])

    post.refresh_from_db()
    assert post.state == PostState.REMOVED and post.current_analysis == analyses[0]
    assert analyses[0].decision == "remove" and analyses[0].top_category == "hate"
    assert analyses[0].risk == pytest.approx(0.9 * 0.95)
    assert analyses[0].explanation["summary"].startswith("The post was removed.")
    assert post.claim_token is None
    assert list(post.events.values_list("to_state", flat=True)) == ["analyzing", "removed"]


def test_record_a_whole_batch_under_one_claim():  # type: ignore[no-untyped-def]
    posts = PostFactory.create_batch(3)
    token, claimed = post_claim_batch(limit=3, worker="w1")

    analyses = analysis_record_batch(token=token, policy=policy_active(), worker="w1",
                                     results=[engine_result(p, hate=0.6) for p in claimed])

    assert len(analyses) == 3 and {a.claim_token for a in analyses} == {token}
    assert states(*posts) == ["needs_review"] * 3


def test_record_for_a_lost_claim_writes_nothing():  # type: ignore[no-untyped-def]
    post = PostFactory()
    token, _ = post_claim_batch(limit=1, worker="w1")
    Post.objects.filter(pk=post.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    post_sweep()  # the claim expired: the post goes back to the queue
    new_token, _ = post_claim_batch(limit=1, worker="w2")

    stale = analysis_record_batch(token=token, policy=policy_active(), worker="w1",
                                  results=[engine_result(post, hate=0.1)])
    fresh = analysis_record_batch(token=new_token, policy=policy_active(), worker="w2",
                                  results=[engine_result(post, hate=0.1)])

    assert stale == [] and len(fresh) == 1
    assert Analysis.objects.filter(post=post).count() == 1


def test_recording_the_same_claim_twice_writes_one_analysis():  # type: ignore[no-untyped-def]
    post = PostFactory()
    token, _ = post_claim_batch(limit=1, worker="w1")
    result = engine_result(post, hate=0.1)

    analysis_record_batch(token=token, policy=policy_active(), worker="w1", results=[result])
    again = analysis_record_batch(token=token, policy=policy_active(), worker="w1", results=[result])

    assert again == [] and Analysis.objects.count() == 1


@pytest.mark.parametrize(
    ("scores", "decision"),
    [
        ({"hate": 0.95}, "remove"),
        ({"hate": 0.6}, "review"),
        ({"hate": 0.6, "extremism": 0.9}, "remove"),
        ({"hate": 0.2, "extremism": 0.3}, "allow"),
    ],
)
def test_decide_by_thresholds(scores, decision):  # type: ignore[no-untyped-def]
    policy = policy_for_engine(policy=policy_active())

    assert analysis_decide(scores=scores, policy=policy, post_id=PostFactory().pk).decision == decision


def test_review_sample_rate_sends_allowed_posts_to_review(settings):  # type: ignore[no-untyped-def]
    policy = policy_for_engine(policy=policy_active())
    posts = PostFactory.create_batch(40)
    settings.MODERATION = {**settings.MODERATION, "REVIEW_SAMPLE_RATE": 1.0}
    everything = {analysis_decide(scores={}, policy=policy, post_id=p.pk).decision for p in posts}
    settings.MODERATION = {**settings.MODERATION, "REVIEW_SAMPLE_RATE": 0.0}
    nothing = {analysis_decide(scores={}, policy=policy, post_id=p.pk).decision for p in posts}

    assert (everything, nothing) == ({"review"}, {"allow"})


def test_failed_attempts_requeue_then_fail_with_error(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_ATTEMPTS": 2}
    post = PostFactory()

    token, _ = post_claim_batch(limit=1, worker="w")
    first = post_attempt_fail(token=token, post_id=post.pk, error="CUDA error", worker="w")
    token, _ = post_claim_batch(limit=1, worker="w")
    second = post_attempt_fail(token=token, post_id=post.pk, error="CUDA error again", worker="w")

    post.refresh_from_db()
    assert (first, second) == ("queued", "failed")
    assert post.state == "failed" and post.last_error == "CUDA error again" and post.attempts == 2


def test_permanent_failure_fails_at_once():  # type: ignore[no-untyped-def]
    post = PostFactory()
    token, _ = post_claim_batch(limit=1, worker="w")

    assert post_attempt_fail(token=token, post_id=post.pk, error="bad image", worker="w", permanent=True) == "failed"


def test_sweep_releases_expired_claims_and_fails_exhausted_ones(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_ATTEMPTS": 2, "CLAIM_TIMEOUT": 60}
    retry, exhausted, fresh = PostFactory(), PostFactory(), PostFactory()
    post_claim_batch(limit=3, worker="dead")
    old = timezone.now() - timedelta(minutes=5)
    Post.objects.filter(pk__in=[retry.pk, exhausted.pk]).update(claimed_at=old)
    Post.objects.filter(pk=exhausted.pk).update(attempts=2)  # its second attempt was this claim

    result = post_sweep()

    assert result["released"] == 2
    assert states(retry, exhausted, fresh) == ["queued", "failed", "analyzing"]
    assert "claim expired" in Post.objects.get(pk=exhausted.pk).last_error


def test_worker_restart_releases_its_own_claims_only():  # type: ignore[no-untyped-def]
    mine, theirs = PostFactory(), PostFactory()
    post_claim_batch(limit=1, worker="gpu0@host")
    post_claim_batch(limit=1, worker="gpu1@host")

    released = post_release_worker_claims(worker="gpu0@host")

    assert released == 1
    assert sorted(states(mine, theirs)) == ["analyzing", "queued"]
    assert PostEvent.objects.filter(to_state="queued", actor="worker:gpu0@host").count() == 1


def test_a_dead_worker_s_claim_ahead_goes_back_uncharged():  # type: ignore[no-untyped-def]
    PostFactory.create_batch(4)
    post_claim_batch(limit=2, worker="gpu0")
    _, ahead = post_claim_batch(limit=2, worker="gpu0", charge=False)

    assert post_release_worker_claims(worker="gpu0") == 4

    assert sorted((p.state, p.attempts) for p in Post.objects.all()) == [("queued", 0)] * 2 + [("queued", 1)] * 2
    assert {p.pk for p in Post.objects.filter(attempts=0)} == {p.pk for p in ahead}
