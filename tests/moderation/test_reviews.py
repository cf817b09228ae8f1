"""Review services: claiming the queue, the decision ledger, undo, escalation, derived state."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from moderation.models import Post, PostEvent, PostState, ReviewDecision
from moderation.selectors.reviews import review_outcome, review_queue
from moderation.errors import ServiceError
from moderation.conf import moderation_settings
from moderation.services.reviews import (SkippedPost, review_claim_next, review_decide, review_decide_many,
                                         review_state_derive, review_undo)
from tests.conftest import require_service
from tests.factories import UserFactory, post_in_review

Verdict = ReviewDecision.Verdict


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="alice", is_staff=True)


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="bob", is_staff=True)


def _aged(post: Post, hours: float) -> Post:
    Post.objects.filter(pk=post.pk).update(created_at=timezone.now() - timedelta(hours=hours))
    return Post.objects.get(pk=post.pk)


@pytest.mark.django_db
def test_queue_orders_by_priority_times_age():  # type: ignore[no-untyped-def]
    fresh_high = post_in_review(priority=1.0)
    old_low = _aged(post_in_review(priority=0.5), 48)  # 0.5 × (1 + 2 days) = 1.5
    fresh_low = post_in_review(priority=0.2)

    ordered = list(review_queue())

    assert [p.pk for p in ordered] == [old_low.pk, fresh_high.pk, fresh_low.pk]
    assert [round(p.priority, 3) for p in ordered] == [1.5, 1.0, 0.2]


@pytest.mark.django_db
def test_claim_takes_the_top_post_and_sets_the_expiry(alice):  # type: ignore[no-untyped-def]
    post_in_review(priority=0.2)
    top = post_in_review(priority=0.9)
    before = timezone.now()

    claimed = review_claim_next(reviewer=alice)

    assert claimed.pk == top.pk and claimed.review_claimed_by == alice
    expected = before + timedelta(minutes=moderation_settings.REVIEW_CLAIM_MINUTES)
    assert expected <= claimed.review_claimed_until <= expected + timedelta(seconds=5)
    assert PostEvent.objects.filter(post=top, detail={"action": "claim"}, actor="reviewer:alice").count() == 1


@pytest.mark.django_db
def test_claim_skips_posts_held_by_others_and_takes_expired_claims(alice, bob):  # type: ignore[no-untyped-def]
    held = post_in_review(priority=0.9)
    expired = post_in_review(priority=0.8)
    Post.objects.filter(pk=held.pk).update(review_claimed_by=bob, review_claimed_until=timezone.now()
                                           + timedelta(minutes=5))
    Post.objects.filter(pk=expired.pk).update(review_claimed_by=bob, review_claimed_until=timezone.now()
                                              - timedelta(seconds=1))

    assert review_claim_next(reviewer=alice).pk == expired.pk


@pytest.mark.django_db
def test_claim_returns_the_post_already_held_then_none_when_empty(alice, bob):  # type: ignore[no-untyped-def]
    only = post_in_review(priority=0.9)

    assert review_claim_next(reviewer=alice).pk == only.pk
    assert review_claim_next(reviewer=alice).pk == only.pk
    assert review_claim_next(reviewer=bob) is None


@pytest.mark.django_db
def test_not_violating_writes_one_row_and_reviews_the_post(alice):  # type: ignore[no-untyped-def]
    post_in_review(priority=0.7)
    post = review_claim_next(reviewer=alice)
    events_before = PostEvent.objects.filter(post=post).count()

    decision = review_decide(post=post, reviewer=alice, verdict=Verdict.NOT_VIOLATING, category="hate",
                             reason=" looks fine ")

    row = ReviewDecision.objects.get()
    assert row == decision
    assert (row.post_id, row.analysis_id, row.reviewer, row.reviewer_username, row.verdict, row.category,
            row.reason, row.undoes) == (post.pk, post.current_analysis_id, alice, "alice", "not_violating", "",
                                        "looks fine", None)
    post.refresh_from_db()
    assert (post.state, post.review_claimed_by, post.review_claimed_until) == (PostState.REVIEWED, None, None)
    event = PostEvent.objects.filter(post=post).latest("id")
    assert PostEvent.objects.filter(post=post).count() == events_before + 1
    assert (event.from_state, event.to_state, event.actor, event.detail) == (
        "needs_review", "reviewed", "reviewer:alice", {"decision": row.pk, "verdict": "not_violating", "category": ""})


@pytest.mark.django_db
def test_violating_keeps_category_and_reason(alice):  # type: ignore[no-untyped-def]
    post = post_in_review()

    review_decide(post=post, reviewer=alice, verdict=Verdict.VIOLATING, category="extremism", reason="a swastika")

    row = ReviewDecision.objects.get()
    assert (row.verdict, row.category, row.reason) == ("violating", "extremism", "a swastika")
    assert Post.objects.get(pk=post.pk).state == PostState.REVIEWED


@pytest.mark.django_db
@pytest.mark.parametrize(("verdict", "category", "reason", "code"), [
    ("violating", "", "a reason", "decision_incomplete"),
    ("violating", "hate", "  ", "decision_incomplete"),
    ("violating", "no-such-category", "a reason", "category_invalid"),
    ("undo", "", "", "verdict_invalid"),
    ("maybe", "", "", "verdict_invalid"),
])
def test_incomplete_decisions_are_refused_and_write_nothing(alice, verdict, category, reason, code):  # type: ignore[no-untyped-def]
    post = post_in_review()
    events = PostEvent.objects.count()

    with pytest.raises(ServiceError) as caught:
        review_decide(post=post, reviewer=alice, verdict=verdict, category=category, reason=reason)

    assert caught.value.code == code
    assert ReviewDecision.objects.count() == 0 and PostEvent.objects.count() == events
    assert Post.objects.get(pk=post.pk).state == PostState.NEEDS_REVIEW


@pytest.mark.django_db
def test_escalate_keeps_the_post_in_review_released_with_a_higher_priority(alice):  # type: ignore[no-untyped-def]
    post = post_in_review(priority=0.4)
    review_claim_next(reviewer=alice)

    review_decide(post=post, reviewer=alice, verdict=Verdict.ESCALATE)

    post.refresh_from_db()
    assert (post.state, post.review_claimed_by, post.review_priority) == (
        PostState.NEEDS_REVIEW, None, pytest.approx(0.4 + moderation_settings.REVIEW_ESCALATE_BOOST))
    assert list(ReviewDecision.objects.values_list("verdict", flat=True)) == ["escalate"]
    assert review_outcome(post=post).verdict == Verdict.ESCALATE


@pytest.mark.django_db
def test_a_post_held_by_another_reviewer_or_already_reviewed_is_refused(alice, bob):  # type: ignore[no-untyped-def]
    post = post_in_review()
    review_claim_next(reviewer=bob)

    with pytest.raises(ServiceError, match="Another reviewer"):
        review_decide(post=post, reviewer=alice, verdict=Verdict.NOT_VIOLATING)
    review_decide(post=post, reviewer=bob, verdict=Verdict.NOT_VIOLATING)
    with pytest.raises(ServiceError) as caught:
        review_decide(post=post, reviewer=alice, verdict=Verdict.NOT_VIOLATING)

    assert caught.value.code == "post_not_in_review"
    assert ReviewDecision.objects.count() == 1


@pytest.mark.django_db
def test_undo_within_the_window_reopens_the_post_for_its_reviewer(alice):  # type: ignore[no-untyped-def]
    post = post_in_review()
    decision = review_decide(post=post, reviewer=alice, verdict=Verdict.NOT_VIOLATING)

    undo = review_undo(reviewer=alice)

    assert (undo.verdict, undo.undoes, undo.post_id, undo.reviewer_username, undo.analysis_id) == (
        "undo", decision, post.pk, "alice", decision.analysis_id)
    post.refresh_from_db()
    assert (post.state, post.review_claimed_by) == (PostState.NEEDS_REVIEW, alice)
    assert review_outcome(post=post) is None
    assert review_undo(reviewer=alice) is None  # an undo is not undone, and a decision only once
    assert ReviewDecision.objects.count() == 2


@pytest.mark.django_db
def test_undo_after_the_window_does_nothing(alice):  # type: ignore[no-untyped-def]
    post = post_in_review()
    decision = review_decide(post=post, reviewer=alice, verdict=Verdict.NOT_VIOLATING)
    ReviewDecision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(seconds=31))

    assert review_undo(reviewer=alice, within_seconds=30) is None
    assert ReviewDecision.objects.count() == 1
    assert Post.objects.get(pk=post.pk).state == PostState.REVIEWED


@pytest.mark.django_db
def test_state_derives_from_the_latest_standing_decision(alice, bob):  # type: ignore[no-untyped-def]
    post = post_in_review()
    escalation = review_decide(post=post, reviewer=alice, verdict=Verdict.ESCALATE)
    review_decide(post=post, reviewer=bob, verdict=Verdict.VIOLATING, category="hate", reason="slur")
    assert review_undo(reviewer=alice) is None  # superseded by bob's decision

    review_undo(reviewer=bob)

    assert review_outcome(post=post) == escalation
    assert Post.objects.get(pk=post.pk).state == PostState.NEEDS_REVIEW
    assert [review_state_derive(decision=d) for d in (None, escalation)] == ["needs_review", "needs_review"]


@pytest.mark.django_db
def test_decisions_survive_the_reviewer_deletion(alice):  # type: ignore[no-untyped-def]
    review_decide(post=post_in_review(), reviewer=alice, verdict=Verdict.NOT_VIOLATING)

    alice.delete()

    row = ReviewDecision.objects.get()
    assert (row.reviewer, row.reviewer_username) == (None, "alice")


@pytest.mark.django_db
def test_bulk_decides_each_post_once_and_skips_the_rest(alice):  # type: ignore[no-untyped-def]
    waiting = [post_in_review(), post_in_review()]
    allowed = post_in_review(state=PostState.ALLOWED)

    decided, skipped = review_decide_many(posts=[*waiting, allowed], reviewer=alice, verdict=Verdict.ESCALATE)

    assert sorted(d.post_id for d in decided) == sorted(p.pk for p in waiting)
    assert skipped == [SkippedPost(post=allowed, reason="The post is allowed, not waiting for review.")]
    assert ReviewDecision.objects.count() == 2


def _claim_in_thread(user_pk, results, key, *, hold=None, after=None):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    try:
        reviewer = get_user_model().objects.get(pk=user_pk)
        if after:
            after.wait(timeout=10)
        with transaction.atomic():
            results[key] = review_claim_next(reviewer=reviewer)
            if hold:
                hold[0].set()
                hold[1].wait(timeout=10)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_claiming_at_once_get_different_posts(alice, bob):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        require_service("two concurrent connections need PostgreSQL (set DATABASE_URL)")
    first, second = post_in_review(priority=0.9), post_in_review(priority=0.8)
    results: dict[str, Post | None] = {}
    locked, release = threading.Event(), threading.Event()
    # Alice's transaction holds the top post's row lock while Bob claims: SKIP LOCKED must pass over it.
    a = threading.Thread(target=_claim_in_thread, args=(alice.pk, results, "alice"), kwargs={"hold": (locked, release)})
    a.start()
    assert locked.wait(timeout=10)
    b = threading.Thread(target=_claim_in_thread, args=(bob.pk, results, "bob"))
    b.start()
    b.join(timeout=10)
    release.set()
    a.join(timeout=10)

    assert not b.is_alive(), "bob waited on alice's lock instead of skipping it"
    assert (results["alice"].pk, results["bob"].pk) == (first.pk, second.pk)


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_claims_never_share_a_post(alice, bob):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        require_service("two concurrent connections need PostgreSQL (set DATABASE_URL)")
    post_in_review(priority=0.5)
    for _ in range(5):
        start, results = threading.Barrier(2), {}
        threads = [threading.Thread(target=_claim_in_thread, args=(u.pk, results, u.username), kwargs={"after": start})
                   for u in (alice, bob)]
        [t.start() for t in threads]
        [t.join(timeout=10) for t in threads]
        claimed = [p for p in results.values() if p is not None]
        assert len(claimed) == 1  # one post, two reviewers: exactly one gets it
        Post.objects.filter(pk=claimed[0].pk).update(review_claimed_by=None, review_claimed_until=None)
