"""The reviewer's near-duplicates in the admin: the list on the post page, the cluster decision and
its confirmation, the folded queue."""
from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from moderation.models import Post, PostState, ReviewDecision
from moderation.services.reviews import review_decide
from tests.factories import UserFactory, post_in_review
from tests.moderation.test_clusters import OTHER, hashed, pdq

pytestmark = pytest.mark.django_db


@pytest.fixture
def copies():  # type: ignore[no-untyped-def]
    acme = UserFactory(username="acme")
    post = hashed(0.9, pdq(), client=acme)
    waiting = hashed(0.5, pdq(range(12)), client=acme)
    reviewed = hashed(0.4, pdq(range(5)), client=acme)
    review_decide(post=reviewed, reviewer=UserFactory(username="alice"), verdict="not_violating")
    for p, vector in ((post, [1.0, 0.0]), (waiting, [0.8, 0.6])):
        p.current_analysis.image_embedding = np.asarray(vector, dtype="<f4").tobytes()
        p.current_analysis.save()
    stranger = hashed(0.5, pdq(range(2)), client=UserFactory(username="globex"))
    return {"post": post, "waiting": waiting, "reviewed": reviewed, "stranger": stranger}


def _cluster_url(post: Post) -> str:
    return reverse("admin:moderation_review_cluster", args=[post.pk])


def test_post_page_lists_the_clients_near_duplicates_with_distance_similarity_state_and_decision(
        reviewer_client, copies):  # type: ignore[no-untyped-def]
    page = reviewer_client.get(reverse("admin:moderation_review_post", args=[copies["post"].pk])).content.decode()

    rows = page.split('data-testid="near-duplicates"')[1].split("</table>")[0]
    assert [line.split('<tr data-post="')[1][:36] for line in rows.split("\n") if '<tr data-post="' in line] == [
        str(copies["reviewed"].pk), str(copies["waiting"].pk)]
    assert str(copies["stranger"].pk) not in rows  # the same image, another client
    cells = [(c.split(">", 1)[1].split("<", 1)[0]) for c in rows.split('data-testid="near-')[1:]]
    assert cells == ["5", "—", "reviewed", "engine: review; reviewer: Not Violating",
                     "12", "0.80", "needs_review", "engine: review"]
    assert 'id="cluster-decide"' in page and "its 2 near-duplicates (2 can be decided now)" in page


def test_cluster_decision_confirms_first_then_writes_one_row_per_eligible_post(
        reviewer_client, copies):  # type: ignore[no-untyped-def]
    before = list(ReviewDecision.objects.values_list("pk", flat=True))
    decision = {"verdict": "violating", "category": "hate", "reason": "the same meme"}

    confirm = reviewer_client.post(_cluster_url(copies["post"]), decision)

    page = confirm.content.decode()
    assert confirm.status_code == 200
    outcomes = [c.split(">", 1)[1].split("<", 1)[0] for c in page.split('data-testid="member-outcome"')[1:]]
    assert outcomes == ["will be decided", "skipped: already decided: Not Violating by alice", "will be decided"]
    assert "Yes, record it for 2 post(s)" in page
    assert list(ReviewDecision.objects.values_list("pk", flat=True)) == before
    members = [str(copies[name].pk) for name in ("post", "reviewed", "waiting")]
    assert page.count('name="member"') == 3 and all(f'value="{pk}"' in page for pk in members)

    done = reviewer_client.post(_cluster_url(copies["post"]), {**decision, "confirm": "yes", "member": members},
                                follow=True)

    new = ReviewDecision.objects.exclude(pk__in=before)
    assert sorted((str(d.post_id), d.verdict, d.category, d.reason) for d in new) == sorted(
        (str(copies[name].pk), "violating", "hate", "the same meme") for name in ("post", "waiting"))
    assert Post.objects.get(pk=copies["reviewed"].pk).state == PostState.REVIEWED
    assert ReviewDecision.objects.filter(post=copies["reviewed"]).count() == 1
    assert Post.objects.get(pk=copies["stranger"].pk).state == PostState.NEEDS_REVIEW
    text = done.content.decode()
    assert "Recorded “Violating” for 2 post(s) of the cluster" in text
    assert f"1 post(s) skipped: {str(copies['reviewed'].pk)[:8]} (already decided: Not Violating by alice)" in text


def test_cancelling_or_an_incomplete_decision_writes_nothing(reviewer_client, copies):  # type: ignore[no-untyped-def]
    before = ReviewDecision.objects.count()
    confirm = reviewer_client.post(_cluster_url(copies["post"]), {"verdict": "not_violating"}).content.decode()
    back = reverse("admin:moderation_review_post", args=[copies["post"].pk])
    assert f'href="{back}" class="button cancel-link" id="cancel-cluster"' in confirm

    assert reviewer_client.get(back).status_code == 200
    incomplete = reviewer_client.post(_cluster_url(copies["post"]), {"verdict": "violating", "category": "hate"},
                                      follow=True)

    assert incomplete.redirect_chain == [(back, 302)]
    assert "A violating decision needs a category and a reason." in incomplete.content.decode()
    assert ReviewDecision.objects.count() == before
    assert Post.objects.get(pk=copies["post"].pk).state == PostState.NEEDS_REVIEW


def test_another_clients_post_in_the_confirmed_list_is_a_404_and_nothing_changes(
        reviewer_client, copies):  # type: ignore[no-untyped-def]
    before = ReviewDecision.objects.count()
    members = [str(copies["post"].pk), str(copies["waiting"].pk), str(copies["stranger"].pk)]

    response = reviewer_client.post(_cluster_url(copies["post"]), {"verdict": "not_violating", "confirm": "yes",
                                                                   "member": members})
    malformed = reviewer_client.post(_cluster_url(copies["post"]), {"verdict": "not_violating", "confirm": "yes",
                                                                    "member": ["not-an-id"]})

    assert (response.status_code, malformed.status_code) == (404, 404)
    assert ReviewDecision.objects.count() == before
    assert set(Post.objects.filter(pk__in=members).values_list("state", flat=True)) == {PostState.NEEDS_REVIEW}


@pytest.mark.parametrize("role", ["viewer", "not staff"])
def test_only_reviewers_may_decide_a_cluster(client, groups, copies, role):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Permission

    user = UserFactory(username="vic", is_staff=role == "viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_post"))
    client.force_login(user)
    before = ReviewDecision.objects.count()
    members = [str(copies["post"].pk), str(copies["waiting"].pk)]

    asked = client.post(_cluster_url(copies["post"]), {"verdict": "not_violating"})
    confirmed = client.post(_cluster_url(copies["post"]), {"verdict": "not_violating", "confirm": "yes",
                                                           "member": members})

    if role == "viewer":
        assert (asked.status_code, confirmed.status_code) == (403, 403)
        page = client.get(reverse("admin:moderation_review_post", args=[copies["post"].pk])).content.decode()
        assert 'data-testid="near-duplicates"' in page and 'id="cluster-decide"' not in page
    else:
        assert asked.status_code == confirmed.status_code == 302 and "/login/" in asked["Location"]
    assert ReviewDecision.objects.count() == before
    assert set(Post.objects.filter(pk__in=members).values_list("state", flat=True)) == {PostState.NEEDS_REVIEW}


def test_queue_shows_a_cluster_as_one_row_with_its_count(reviewer_client):  # type: ignore[no-untyped-def]
    acme = UserFactory(username="acme")
    top = hashed(0.9, pdq(), client=acme)
    folded = [hashed(0.5, pdq(range(i + 1)), client=acme) for i in range(3)]
    other = hashed(0.7, pdq(base=OTHER), client=acme)
    plain = post_in_review(priority=0.1)

    page = reviewer_client.get(reverse("admin:moderation_review_queue")).content.decode()

    body = page.split("<tbody>")[1]
    assert [pk for pk in (top.pk, other.pk, plain.pk) if f'<span class="mod-id" title="{pk}">' in body] == [
        top.pk, other.pk, plain.pk]
    assert body.index(str(top.pk)) < body.index(str(other.pk)) < body.index(str(plain.pk))
    assert body.count('data-testid="cluster-size"') == 1 and ">×4</span>" in body
    assert [f'<span class="mod-id" title="{p.pk}">' in body for p in folded] == [False] * 3
    links = [reverse("admin:moderation_review_post", args=[p.pk]) for p in folded]
    assert [body.count(f'data-testid="folded" href="{link}"') for link in links] == [1, 1, 1]
    assert "3 copies" in body
    assert '<strong data-testid="waiting">6</strong>' in page  # posts, not rows
