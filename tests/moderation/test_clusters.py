"""Near-duplicate clusters: the queue folded by cluster, a post's cluster, and one decision for it."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.test import override_settings
from django.utils import timezone

from moderation.models import BankEntry, Post, PostEvent, PostState, ReviewDecision
from moderation.selectors.clusters import queue_fold, review_cluster, review_neighbours, review_queue_page
from moderation.errors import ServiceError
from moderation.services.reviews import SkippedPost, review_decide, review_decide_cluster
from tests.factories import UserFactory, post_in_review

pytestmark = pytest.mark.django_db

BASE = np.random.default_rng(7).integers(0, 256, 32, dtype=np.uint8)


def pdq(flipped: range | list[int] = (), base: np.ndarray = BASE) -> str:
    """``base`` with the given bits flipped (bit 0: the first hex digit's high bit), as 64 hex digits."""
    bits = np.unpackbits(base.copy())
    bits[list(flipped)] ^= 1
    return np.packbits(bits).tobytes().hex()


OTHER = np.random.default_rng(8).integers(0, 256, 32, dtype=np.uint8)


def hashed(priority: float, pdq_hash: str, **fields: object) -> Post:
    return post_in_review(priority=priority, pdq_hash=pdq_hash, **{"pdq_quality": 100, **fields})


def test_queue_fold_leads_with_the_first_row_and_takes_only_its_clients_near_copies():  # type: ignore[no-untyped-def]
    rows = [
        ("a0", "acme", pdq(), 100),
        ("b0", "globex", pdq(), 100),  # the same image from another client: a cluster of its own
        ("a1", "acme", pdq(range(20)), 100),  # 20 bits from a0
        ("a2", "acme", pdq(range(20, 51)), 100),  # 31 bits from a0 (the threshold), 51 from a1
        ("a3", "acme", pdq(range(32)), 100),  # 32 bits from a0: too far; 12 from a1, but a1 is taken
        ("a4", "acme", pdq(range(5)), 30),  # near, but too flat to trust
        ("a5", "acme", "", None),  # no image
        ("a6", "acme", pdq(range(40)), 100),  # 8 bits from a3: a3 leads it
        ("a7", "acme", pdq(base=OTHER), 100),
    ]

    clusters = queue_fold(rows=rows, threshold=31, min_quality=50, limit=50)

    assert clusters == [["a0", "a1", "a2"], ["b0"], ["a3", "a6"], ["a4"], ["a5"], ["a7"]]
    assert queue_fold(rows=rows, threshold=31, min_quality=50, limit=2) == [["a0", "a1", "a2"], ["b0"]]
    assert queue_fold(rows=rows, threshold=0, min_quality=0, limit=3) == [["a0"], ["b0"], ["a1"]]
    assert queue_fold(rows=[], threshold=31, min_quality=50, limit=50) == []


def test_queue_page_shows_a_cluster_as_its_highest_priority_post_with_its_count():  # type: ignore[no-untyped-def]
    acme = UserFactory(username="acme")
    top = hashed(0.9, pdq(range(3)), client=acme)
    copies = [hashed(0.5 - i / 100, pdq(range(i + 4)), client=acme) for i in range(10)]
    lone = hashed(0.7, pdq(base=OTHER), client=acme)
    elsewhere = hashed(0.6, pdq(), client=UserFactory(username="globex"))
    plain = post_in_review(priority=0.8)  # no hash: a row of its own

    rows = review_queue_page()

    assert [(r.post.pk, r.cluster_size) for r in rows] == [
        (top.pk, 11), (plain.pk, 1), (lone.pk, 1), (elsewhere.pk, 1)]
    assert [p.pk for p in rows[0].folded] == [p.pk for p in copies[:8]]
    assert rows[0].score == 0.72 and round(rows[0].post.priority, 2) == 0.90


def test_j_and_k_step_over_folded_copies():  # type: ignore[no-untyped-def]
    first, copy, second = hashed(0.9, pdq()), hashed(0.8, pdq(range(2))), hashed(0.7, pdq(base=OTHER))
    Post.objects.filter(pk=copy.pk).update(client=first.client)
    Post.objects.filter(pk=second.pk).update(client=first.client)

    assert review_neighbours(post=first) == (None, second.pk)
    assert review_neighbours(post=second) == (first.pk, None)
    assert review_neighbours(post=copy) == (None, first.pk)


def test_a_similarity_from_a_random_weight_embedder_is_withheld():  # type: ignore[no-untyped-def]
    from moderation.selectors.banks import post_near_duplicates

    acme = UserFactory(username="acme")
    post, random_copy, real_copy = (hashed(0.5, pdq(range(n)), client=acme) for n in (0, 3, 4))
    for p, vector in ((post, [1.0, 0.0]), (random_copy, [1.0, 0.0]), (real_copy, [0.8, 0.6])):
        p.current_analysis.image_embedding = np.asarray(vector, dtype="<f4").tobytes()
        p.current_analysis.save()
    random_copy.current_analysis.explanation = {"roles": {"real": [], "no_checkpoint": ["embedder"]}}
    random_copy.current_analysis.save()

    near = post_near_duplicates(post=post)

    assert [(n.post.pk, n.distance, n.similarity) for n in near] == [(random_copy.pk, 3, None),
                                                                     (real_copy.pk, 4, 0.8)]


@pytest.fixture
def cluster(groups):  # type: ignore[no-untyped-def]
    """A post in review and its copies in every situation, plus posts that are not its copies."""
    acme, globex = UserFactory(username="acme"), UserFactory(username="globex")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    now = timezone.now()
    made = {
        "post": hashed(0.9, pdq(), client=acme),
        "waiting": hashed(0.5, pdq(range(12)), client=acme),
        "reviewed": hashed(0.5, pdq(range(4)), client=acme),
        "allowed": hashed(0.5, pdq(range(6)), client=acme, state=PostState.ALLOWED),
        "held": hashed(0.5, pdq(range(8)), client=acme, review_claimed_by=bob,
                       review_claimed_until=now + timedelta(minutes=5)),
        "escalated": hashed(0.5, pdq(range(10)), client=acme),
        "lapsed": hashed(0.5, pdq(range(31)), client=acme, review_claimed_by=bob,
                         review_claimed_until=now - timedelta(minutes=1)),
    }
    review_decide(post=made["reviewed"], reviewer=alice, verdict="violating", category="hate", reason="a slur")
    review_decide(post=made["escalated"], reviewer=bob, verdict="escalate")
    hashed(0.5, pdq(), client=globex)  # the same image, another client
    hashed(0.5, pdq(range(32)), client=acme)  # one bit too far
    hashed(0.5, pdq(range(2)), client=acme, pdq_quality=10)  # too flat
    return {**made, "alice": alice, "bob": bob, "reviewer": UserFactory(username="rita")}


def test_a_cluster_lists_every_copy_of_the_client_with_why_a_decision_skips_it(cluster):  # type: ignore[no-untyped-def]
    members = review_cluster(post=cluster["post"], reviewer=cluster["reviewer"])

    names = {post.pk: name for name, post in cluster.items() if isinstance(post, Post)}
    assert [(names[m.post.pk], m.distance, m.skip) for m in members] == [
        ("post", 0, ""),
        ("reviewed", 4, "already decided: Violating by alice"),
        ("allowed", 6, "not waiting for review (allowed)"),
        ("held", 8, "held by bob"),
        ("escalated", 10, "escalated by bob: decide it on its own page"),
        ("waiting", 12, ""),
        ("lapsed", 31, ""),
    ]
    assert [(m.decision, m.outcome and m.outcome.verdict) for m in members[:2]] == [
        ("review", None), ("review", "violating")]


def test_a_cluster_decision_writes_one_row_per_copy_it_reaches_and_banks_each(cluster):  # type: ignore[no-untyped-def]
    listed = [m.post.pk for m in review_cluster(post=cluster["post"], reviewer=cluster["reviewer"])]
    before = ReviewDecision.objects.count()

    decided, skipped = review_decide_cluster(post=cluster["post"], reviewer=cluster["reviewer"], member_ids=listed,
                                             verdict="violating", category="hate", reason="the same meme")

    reached = [cluster[name].pk for name in ("post", "waiting", "lapsed")]
    assert [d.post_id for d in decided] == reached
    assert [(s.post.pk, s.reason) for s in skipped] == [
        (cluster["reviewed"].pk, "already decided: Violating by alice"),
        (cluster["allowed"].pk, "not waiting for review (allowed)"),
        (cluster["held"].pk, "held by bob"),
        (cluster["escalated"].pk, "escalated by bob: decide it on its own page")]
    assert ReviewDecision.objects.count() == before + 3
    assert {(d.post_id, d.verdict, d.category, d.reason, d.reviewer_username) for d in decided} == {
        (pk, "violating", "hate", "the same meme", "rita") for pk in reached}
    assert set(Post.objects.filter(pk__in=reached).values_list("state", flat=True)) == {PostState.REVIEWED}
    assert PostEvent.objects.filter(post_id__in=reached, to_state=PostState.REVIEWED).count() == 3
    assert Post.objects.get(pk=cluster["allowed"].pk).state == PostState.ALLOWED
    banked = BankEntry.objects.filter(bank__purpose="reviewed_violating", bank__client=cluster["post"].client)
    assert sorted(banked.values_list("review_decision_id", flat=True)) == sorted(
        [d.pk for d in decided] + [ReviewDecision.objects.get(post=cluster["reviewed"]).pk])


def test_a_cluster_decision_touches_only_the_posts_the_confirmation_listed(cluster):  # type: ignore[no-untyped-def]
    stranger = hashed(0.5, pdq(range(3)), client=UserFactory(username="initech"))
    far = Post.objects.get(client=cluster["post"].client, pdq_hash=pdq(range(32)))

    decided, skipped = review_decide_cluster(
        post=cluster["post"], reviewer=cluster["reviewer"], verdict="not_violating",
        member_ids=[cluster["waiting"].pk, far.pk, stranger.pk])

    assert [d.post_id for d in decided] == [cluster["waiting"].pk]
    assert skipped == [SkippedPost(post=far, reason="no longer a near-duplicate of this post")]
    assert Post.objects.get(pk=cluster["post"].pk).state == PostState.NEEDS_REVIEW
    assert Post.objects.get(pk=stranger.pk).state == PostState.NEEDS_REVIEW


@pytest.mark.parametrize(("decision", "code"), [
    ({"verdict": "violating", "category": "hate", "reason": " "}, "decision_incomplete"),
    ({"verdict": "violating", "category": "nope", "reason": "x"}, "category_invalid"),
    ({"verdict": "undo"}, "verdict_invalid"),
])
def test_an_invalid_cluster_decision_writes_nothing(cluster, decision, code):  # type: ignore[no-untyped-def]
    before = ReviewDecision.objects.count()
    listed = [m.post.pk for m in review_cluster(post=cluster["post"], reviewer=cluster["reviewer"])]

    with pytest.raises(ServiceError) as raised:
        review_decide_cluster(post=cluster["post"], reviewer=cluster["reviewer"], member_ids=listed, **decision)

    assert raised.value.code == code
    assert ReviewDecision.objects.count() == before


@override_settings(MODERATION={"REVIEW_CLUSTER_DISTANCE": 11})
def test_the_cluster_distance_is_a_setting(cluster):  # type: ignore[no-untyped-def]
    members = review_cluster(post=cluster["post"], reviewer=cluster["reviewer"])

    assert [m.distance for m in members] == [0, 4, 6, 8, 10]


@pytest.mark.parametrize("value", [-1, 257, "31", True])
def test_the_cluster_distance_is_checked(value):  # type: ignore[no-untyped-def]
    from tests.moderation.test_conf import check_ids

    with override_settings(MODERATION={"REVIEW_CLUSTER_DISTANCE": value}):
        assert check_ids() == ["moderation.E019"]
