"""Who may see and do what in due process: clients see only their own notices and appeals, and no
reviewer judges an appeal on a post they decided, a review or an earlier appeal."""
from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from moderation.errors import ServiceError
from moderation.models import Appeal, Notice, Post, PostEvent, ReviewDecision, WebhookDelivery, WebhookEndpoint
from moderation.services.appeals import appeal_decide, appeal_submit
from moderation.services.notices import notice_submit
from moderation.services.reviews import review_decide
from moderation.services.webhooks import webhook_secret_new
from tests.factories import UserFactory, post_in_review

pytestmark = pytest.mark.django_db


def _snapshot() -> tuple[object, ...]:
    return (tuple(Notice.objects.order_by("pk").values_list("pk", "decided_at")),
            tuple(Appeal.objects.order_by("pk").values_list("pk", "decision", "decided_at")),
            PostEvent.objects.count(), ReviewDecision.objects.count(), WebhookDelivery.objects.count(),
            tuple(Post.objects.order_by("pk").values_list("pk", "state", "review_priority")))


@pytest.fixture
def restricted_with_history(client_user):  # type: ignore[no-untyped-def]
    """A post of ``client_user`` found violating after a notice, with an open appeal."""
    WebhookEndpoint.objects.create(client=client_user, url="https://hooks.example.com/m", secret=webhook_secret_new())
    post = post_in_review(client=client_user)
    notice_submit(client=client_user, post_id=post.pk, reporter_type="trusted_flagger", category="hate",
                  explanation="A slur.", reporter_reference="ticket-1")
    review_decide(post=post, reviewer=UserFactory(username="bob", is_staff=True), verdict="violating",
                  category="hate", reason="slur")
    appeal_submit(client=client_user, post_id=post.pk, statement="Not a slur.")
    return post


BODIES = {"post-notices": {"reporter_type": "user", "category": "hate", "explanation": "x"},
          "post-appeals": {"statement": "mine now"}, "post-statement": {}}


@pytest.mark.parametrize("name", list(BODIES))
def test_another_client_gets_404_on_a_post_with_notices_and_appeals(other_api, restricted_with_history, name):  # type: ignore[no-untyped-def]
    before = _snapshot()
    url = reverse(f"moderation:{name}", kwargs={"post_id": restricted_with_history.pk})

    read = other_api.get(url)
    written = other_api.post(url, BODIES[name], format="json")

    assert (read.status_code, read.json()["code"]) == (404, "not_found")
    assert written.status_code in (404, 405) and _snapshot() == before
    if name != "post-statement":  # the statement is read-only: 405 before any lookup
        assert (written.status_code, written.json()["code"]) == (404, "not_found")
    assert "hate" not in read.content.decode() and "ticket-1" not in read.content.decode()


@pytest.mark.parametrize("post_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_post_is_404_and_writes_nothing(api, restricted_with_history, post_id):  # type: ignore[no-untyped-def]
    before = _snapshot()

    responses = [api.post(reverse("moderation:post-notices", kwargs={"post_id": post_id}),
                          {"reporter_type": "user", "category": "hate", "explanation": "x"}, format="json"),
                 api.post(reverse("moderation:post-appeals", kwargs={"post_id": post_id}),
                          {"statement": "x"}, format="json")]

    assert [r.status_code for r in responses] == [404, 404] and _snapshot() == before


def test_the_services_refuse_another_client_s_post(other_user, restricted_with_history):  # type: ignore[no-untyped-def]
    before = _snapshot()

    for call in (lambda: notice_submit(client=other_user, post_id=restricted_with_history.pk, reporter_type="user",
                                       category="hate", explanation="x"),
                 lambda: appeal_submit(client=other_user, post_id=restricted_with_history.pk, statement="x")):
        with pytest.raises(ServiceError) as refused:
            call()
        assert (refused.value.code, refused.value.status) == ("not_found", 404)

    assert _snapshot() == before


def test_a_reviewer_who_decided_an_earlier_appeal_does_not_decide_the_next(client_user,  # type: ignore[no-untyped-def]
                                                                            restricted_with_history):
    carol, dave = UserFactory(username="carol", is_staff=True), UserFactory(username="dave", is_staff=True)
    appeal_decide(appeal=Appeal.objects.get(), reviewer=carol, decision="uphold")
    second = appeal_submit(client=client_user, post_id=restricted_with_history.pk, statement="Still not a slur.")
    before = _snapshot()

    with pytest.raises(ServiceError) as refused:
        appeal_decide(appeal=second, reviewer=carol, decision="overturn")

    assert (refused.value.code, refused.value.status) == ("appeal_reviewer_involved", 403)
    assert _snapshot() == before
    assert appeal_decide(appeal=second, reviewer=dave, decision="overturn").decision == "overturn"
