"""Reviewers' "Ask the image": only the claim holder asks, at a per-reviewer rate, never shown to clients."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from moderation.models import EngineRequest
from moderation.services.reviews import review_claim_next
from tests.factories import UserFactory, post_in_review

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewers(db):  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    call_command("moderation_setup_groups", verbosity=0)
    group = Group.objects.get(name="Reviewer")
    made = []
    for name in ("rev1", "rev2"):
        user = UserFactory(username=name, is_staff=True)
        user.groups.add(group)
        made.append(user)
    return made


def _ask(client, post, question="asked by a reviewer"):  # type: ignore[no-untyped-def]
    return client.post(f"/admin/moderation/post/{post.pk}/review/ask/", {"kind": "question", "question": question})


def test_reviewer_question_is_recorded_as_theirs_and_hidden_from_the_client(client, api, client_user,
                                                                            reviewers):  # type: ignore[no-untyped-def]
    rev1, _ = reviewers
    post = post_in_review(client=client_user, image_size=(32, 24))
    assert review_claim_next(reviewer=rev1).pk == post.pk
    client.force_login(rev1)

    response = _ask(client, post)

    assert response.status_code == 202
    asked = EngineRequest.objects.get()
    assert (asked.origin, asked.reviewer, asked.client, asked.params) == (
        "reviewer", rev1, client_user, {"question": "asked by a reviewer"})
    assert api.get(f"/api/v1/posts/{post.pk}/").json()["requests"] == []
    assert api.get(f"/api/v1/requests/{asked.pk}/").status_code == 404
    assert client.get(response.json()["poll_url"]).json()["params"] == {"question": "asked by a reviewer"}


def test_only_the_claim_holder_may_ask(client, client_user, reviewers):  # type: ignore[no-untyped-def]
    rev1, rev2 = reviewers
    post = post_in_review(client=client_user, image_size=(32, 24))
    review_claim_next(reviewer=rev1)
    client.force_login(rev2)

    response = _ask(client, post, "asked by rev2 on rev1's claim")

    assert (response.status_code, response.json()["code"]) == (403, "review_claim_required")
    assert EngineRequest.objects.count() == 0


def test_unclaimed_post_cannot_be_asked_about(client, client_user, reviewers):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user, image_size=(32, 24))
    client.force_login(reviewers[0])

    assert _ask(client, post).status_code == 403
    assert EngineRequest.objects.count() == 0


def test_reviewer_rate_limit(client, client_user, reviewers, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "REVIEWER_REQUEST_RATE": "2/hour"}
    rev1, _ = reviewers
    post = post_in_review(client=client_user, image_size=(32, 24))
    review_claim_next(reviewer=rev1)
    client.force_login(rev1)

    statuses = [_ask(client, post, f"question {n}").status_code for n in range(3)]

    assert statuses == [202, 202, 429]
    assert EngineRequest.objects.filter(reviewer=rev1).count() == 2


def test_client_requests_still_show_on_the_post(api, client_user):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user, image_size=(32, 24))

    created = api.post(f"/api/v1/posts/{post.pk}/questions/", {"question": "Is there a weapon?"}, format="json")

    assert created.status_code == 202
    assert [r["id"] for r in api.get(f"/api/v1/posts/{post.pk}/").json()["requests"]] == [created.json()["id"]]
    assert EngineRequest.objects.get().origin == "client"
