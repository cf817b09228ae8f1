"""Notices: a report sends an allowed post to review, trusted flaggers first; the notifier hears the outcome."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from moderation.conf import moderation_settings
from moderation.models import Notice, Post, PostEvent, PostState, ReviewDecision, WebhookDelivery, WebhookEndpoint
from moderation.services.reviews import review_decide, review_undo
from moderation.services.webhooks import webhook_secret_new
from tests.factories import PostFactory, UserFactory, post_in_review

pytestmark = pytest.mark.django_db
Verdict = ReviewDecision.Verdict


def url(post: Post) -> str:
    return reverse("moderation:post-notices", kwargs={"post_id": post.pk})


def body(**fields: object) -> dict[str, object]:
    return {"reporter_type": "user", "category": "hate", "explanation": "It insults a group.", **fields}


@pytest.fixture
def allowed(client_user):  # type: ignore[no-untyped-def]
    return post_in_review(client=client_user, state=PostState.ALLOWED, priority=0.25)


@pytest.fixture
def endpoint(client_user):  # type: ignore[no-untyped-def]
    return WebhookEndpoint.objects.create(client=client_user, url="https://hooks.example.com/m",
                                          secret=webhook_secret_new())


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="alice", is_staff=True)


def test_a_notice_sends_an_allowed_post_to_review(api, client_user, allowed):  # type: ignore[no-untyped-def]
    response = api.post(url(allowed), body(reporter_reference="ticket-7"), format="json")

    assert response.status_code == 201
    notice = Notice.objects.get()
    assert response.json() == {
        "id": str(notice.pk), "post_id": str(allowed.pk), "reporter_type": "user", "reporter_reference": "ticket-7",
        "category": "hate", "explanation": "It insults a group.", "outcome": None,
        "created_at": response.json()["created_at"], "decided_at": None}
    post = Post.objects.get(pk=allowed.pk)
    assert (post.state, post.review_priority) == ("needs_review", 0.25)  # a user's notice: no priority
    event = PostEvent.objects.get(post=allowed)
    assert (event.from_state, event.to_state, event.actor, event.detail) == (
        "allowed", "needs_review", f"client:{client_user.pk}", {"action": "notice", "notice": str(notice.pk), "reporter_type": "user"})


def test_trusted_flaggers_raise_the_priority_once_per_review(api, allowed):  # type: ignore[no-untyped-def]
    for kind in ("trusted_flagger", "trusted_flagger", "user", "authority"):
        assert api.post(url(allowed), body(reporter_type=kind), format="json").status_code == 201

    post = Post.objects.get(pk=allowed.pk)
    assert post.state == "needs_review"
    assert post.review_priority == pytest.approx(0.25 + moderation_settings.NOTICE_PRIORITY_BOOST)
    assert list(PostEvent.objects.filter(post=allowed).values_list("from_state", "to_state")) == [
        ("allowed", "needs_review"), ("needs_review", "needs_review"), ("needs_review", "needs_review"),
        ("needs_review", "needs_review")]
    counts = api.get(url(allowed)).json()["counts"]
    assert counts == {"user": 1, "trusted_flagger": 2, "authority": 1, "total": 4, "open": 4}


@pytest.mark.parametrize("fields, code", [
    ({"category": "spam"}, "category_invalid"),
    ({"reporter_type": "police"}, "reporter_type_invalid"),
    ({"explanation": "   "}, "explanation_invalid"),
    ({"explanation": "x" * 5001}, "explanation_invalid"),
    ({"reporter_reference": "r" * 256}, "reporter_reference_invalid"),
    ({"reporter_email": "a@b.c"}, "unknown_field"),
])
def test_bad_notices_are_400_and_write_nothing(api, allowed, fields, code):  # type: ignore[no-untyped-def]
    response = api.post(url(allowed), body(**fields), format="json")

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert Notice.objects.count() == 0
    assert Post.objects.get(pk=allowed.pk).state == "allowed"
    assert PostEvent.objects.count() == 0


def test_another_client_s_post_is_404_and_writes_nothing(other_api, allowed):  # type: ignore[no-untyped-def]
    assert other_api.post(url(allowed), body(), format="json").status_code == 404
    assert other_api.get(url(allowed)).status_code == 404
    assert Notice.objects.count() == 0
    assert Post.objects.get(pk=allowed.pk).state == "allowed"


def test_a_post_without_a_verdict_yet_is_409(api, client_user):  # type: ignore[no-untyped-def]
    queued = PostFactory(client=client_user)

    response = api.post(url(queued), body(), format="json")

    assert (response.status_code, response.json()["code"]) == (409, "post_not_decided")
    assert Notice.objects.count() == 0


def test_the_review_answers_the_notices_and_tells_the_notifier(api, allowed, alice, endpoint):  # type: ignore[no-untyped-def]
    api.post(url(allowed), body(reporter_type="trusted_flagger", reporter_reference="tf-1"), format="json")
    notice = Notice.objects.get()

    decision = review_decide(post=allowed, reviewer=alice, verdict=Verdict.VIOLATING, category="hate",
                             reason="slur in the image")

    notice.refresh_from_db()
    assert (notice.outcome, notice.decision_id, notice.decided_at is not None) == ("restricted", decision.pk, True)
    told = WebhookDelivery.objects.get(event_key=f"notice:{notice.pk}:{decision.pk}")
    assert told.payload == {
        "type": "notice.decided",
        "notice": {"id": str(notice.pk), "reporter_type": "trusted_flagger", "reporter_reference": "tf-1",
                   "category": "hate", "outcome": "restricted", "created_at": notice.created_at.isoformat(),
                   "decided_at": notice.decided_at.isoformat()},
        "post": {"id": str(allowed.pk), "external_id": None, "status": "reviewed"}}
    assert WebhookDelivery.objects.filter(event_key=f"review:{decision.pk}").count() == 1


def test_an_undone_review_answers_the_notice_again(api, allowed, alice, endpoint):  # type: ignore[no-untyped-def]
    api.post(url(allowed), body(), format="json")
    first = review_decide(post=allowed, reviewer=alice, verdict=Verdict.VIOLATING, category="hate", reason="slur")
    review_undo(reviewer=alice)
    assert Notice.objects.get().outcome == "restricted"  # answered; the new decision will answer again

    second = review_decide(post=allowed, reviewer=alice, verdict=Verdict.NOT_VIOLATING)

    notice = Notice.objects.get()
    assert (notice.outcome, notice.decision_id) == ("no_action", second.pk)
    keys = sorted(WebhookDelivery.objects.filter(event_key__startswith="notice:").values_list("event_key", flat=True))
    assert keys == sorted([f"notice:{notice.pk}:{first.pk}", f"notice:{notice.pk}:{second.pk}"])


def test_a_notice_on_a_removed_post_is_answered_at_once(api, client_user, endpoint):  # type: ignore[no-untyped-def]
    removed = post_in_review(client=client_user, state=PostState.REMOVED)

    api.post(url(removed), body(), format="json")

    notice = Notice.objects.get()
    assert (notice.outcome, notice.decision_id) == ("restricted", None)
    assert Post.objects.get(pk=removed.pk).state == "removed"
    assert WebhookDelivery.objects.get(event_key=f"notice:{notice.pk}:0").payload["notice"]["outcome"] == "restricted"


def test_the_post_page_shows_the_notice_counts(api, client, allowed):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    reviewer = UserFactory(username="rita", is_staff=True)
    reviewer.groups.add(Group.objects.get(name="Reviewer"))
    client.force_login(reviewer)
    api.post(url(allowed), body(reporter_type="trusted_flagger"), format="json")
    api.post(url(allowed), body(), format="json")

    page = client.get(reverse("admin:moderation_review_post", args=[allowed.pk])).content.decode()

    assert 'data-testid="notices"' in page
    assert "2 notices, 2 open: 1 user, 1 trusted flagger, 0 authority" in page
