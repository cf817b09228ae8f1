"""Appeals: the author contests a restriction; an uninvolved reviewer upholds or overturns it."""
from __future__ import annotations

import threading
from datetime import timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from moderation.errors import ServiceError
from moderation.models import Appeal, Post, PostEvent, PostState, ReviewDecision, WebhookDelivery, WebhookEndpoint
from moderation.selectors.appeals import stats_appeals
from moderation.selectors.learning import standing_decisions
from moderation.services.appeals import MOOT_NOTE, appeal_decide, appeal_submit
from moderation.services.reviews import review_decide, review_undo
from moderation.services.webhooks import webhook_secret_new
from tests.conftest import require_service
from tests.factories import AnalysisFactory, PostFactory, UserFactory, post_in_review

pytestmark = pytest.mark.django_db
Verdict = ReviewDecision.Verdict
STATEMENT = "It is a news photo, not praise of violence."


def url(post: Post) -> str:
    return reverse("moderation:post-appeals", kwargs={"post_id": post.pk})


@pytest.fixture
def removed(client_user):  # type: ignore[no-untyped-def]
    post = PostFactory(client=client_user, state=PostState.REMOVED)
    post.current_analysis = AnalysisFactory(post=post, decision="remove")
    post.save()
    return post


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="bob", is_staff=True)


@pytest.fixture
def carol(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="carol", is_staff=True)


@pytest.fixture
def found_violating(client_user, bob):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user)
    review_decide(post=post, reviewer=bob, verdict=Verdict.VIOLATING, category="hate", reason="slur")
    return Post.objects.get(pk=post.pk)


@pytest.fixture
def endpoint(client_user):  # type: ignore[no-untyped-def]
    return WebhookEndpoint.objects.create(client=client_user, url="https://hooks.example.com/m",
                                          secret=webhook_secret_new())


def test_the_author_appeals_a_removed_post(api, client_user, removed):  # type: ignore[no-untyped-def]
    response = api.post(url(removed), {"statement": f"  {STATEMENT} "}, format="json")

    assert response.status_code == 201
    appeal = Appeal.objects.get()
    assert response.json() == {"id": str(appeal.pk), "post_id": str(removed.pk), "statement": STATEMENT,
                               "created_at": response.json()["created_at"], "decision": None, "note": None,
                               "decided_at": None}
    assert (appeal.restriction_puid, appeal.restriction_category, appeal.restriction_automated) == (
        f"{removed.pk}-analysis-{removed.current_analysis_id}", "hate", True)
    event = PostEvent.objects.get(post=removed)
    assert (event.from_state, event.to_state, event.actor, event.detail) == (
        "removed", "removed", f"client:{client_user.pk}", {"action": "appeal", "appeal": str(appeal.pk)})
    assert api.get(url(removed)).json() == [response.json()]


def test_a_post_found_violating_by_a_reviewer_is_appealable(api, found_violating):  # type: ignore[no-untyped-def]
    assert api.post(url(found_violating), {"statement": STATEMENT}, format="json").status_code == 201

    appeal = Appeal.objects.get()
    assert (appeal.restriction_category, appeal.restriction_automated) == ("hate", False)


@pytest.mark.parametrize("body, code", [
    ({"statement": "  "}, "statement_invalid"),
    ({"statement": "x" * 5001}, "statement_invalid"),
    ({"statement": "a\x00b"}, "statement_invalid"),
    ({}, "statement_invalid"),
    ({"statement": STATEMENT, "email": "a@b.c"}, "unknown_field"),
])
def test_bad_statements_are_400_and_write_nothing(api, removed, body, code):  # type: ignore[no-untyped-def]
    response = api.post(url(removed), body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert (Appeal.objects.count(), PostEvent.objects.count()) == (0, 0)


@pytest.mark.parametrize("state", [PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.QUEUED, PostState.FAILED])
def test_a_post_that_is_not_restricted_is_409_not_appealable(api, client_user, state):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user, state=state)

    response = api.post(url(post), {"statement": STATEMENT}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "not_appealable")
    assert (Appeal.objects.count(), PostEvent.objects.count()) == (0, 0)


def test_a_post_found_not_violating_is_409_not_appealable(api, client_user, bob):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user)
    review_decide(post=post, reviewer=bob, verdict=Verdict.NOT_VIOLATING)

    response = api.post(url(post), {"statement": STATEMENT}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "not_appealable")
    assert Appeal.objects.count() == 0


def test_after_the_window_an_appeal_is_409_appeal_window_closed(api, removed, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**getattr(settings, "MODERATION", {}), "APPEAL_WINDOW_DAYS": 10}
    analysis = removed.current_analysis
    type(analysis).objects.filter(pk=analysis.pk).update(created_at=timezone.now() - timedelta(days=10, minutes=1))

    response = api.post(url(removed), {"statement": STATEMENT}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "appeal_window_closed")
    assert (Appeal.objects.count(), PostEvent.objects.count()) == (0, 0)
    type(analysis).objects.filter(pk=analysis.pk).update(created_at=timezone.now() - timedelta(days=9, hours=23))
    assert api.post(url(removed), {"statement": STATEMENT}, format="json").status_code == 201


def test_a_second_open_appeal_is_409_appeal_open(api, removed):  # type: ignore[no-untyped-def]
    assert api.post(url(removed), {"statement": STATEMENT}, format="json").status_code == 201

    response = api.post(url(removed), {"statement": "again"}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "appeal_open")
    assert (Appeal.objects.count(), PostEvent.objects.count()) == (1, 1)


def test_another_client_s_post_is_404_and_writes_nothing(other_api, removed):  # type: ignore[no-untyped-def]
    assert other_api.post(url(removed), {"statement": STATEMENT}, format="json").status_code == 404
    assert other_api.get(url(removed)).status_code == 404
    assert (Appeal.objects.count(), PostEvent.objects.count()) == (0, 0)


def test_an_overturn_restores_the_post_labels_it_and_tells_the_client(client_user, removed, carol,  # type: ignore[no-untyped-def]
                                                                      endpoint):
    appeal = appeal_submit(client=client_user, post_id=removed.pk, statement=STATEMENT)

    decided = appeal_decide(appeal=appeal, reviewer=carol, decision="overturn")

    post = Post.objects.get(pk=removed.pk)
    label = ReviewDecision.objects.get()
    assert post.state == "restored"
    assert (label.verdict, label.reviewer, label.analysis_id, label.category) == (
        "not_violating", carol, removed.current_analysis_id, "")
    assert (decided.decision, decided.decided_by, decided.decided_by_username, decided.review_decision) == (
        "overturn", carol, "carol", label)
    assert [(d.post_id, d.verdict) for d in standing_decisions()] == [(removed.pk, "not_violating")]
    event = PostEvent.objects.get(to_state="restored")
    assert (event.from_state, event.actor, event.detail) == (
        "removed", "reviewer:carol", {"action": "appeal_overturn", "appeal": str(appeal.pk), "decision": label.pk})
    told = WebhookDelivery.objects.get()
    assert (told.event_key, told.post_state) == (f"appeal:{appeal.pk}", "restored")
    assert told.payload == {
        "type": "post.appeal_decided",
        "appeal": {"id": str(appeal.pk), "decision": "overturn", "note": None,
                   "created_at": appeal.created_at.isoformat(), "decided_at": decided.decided_at.isoformat()},
        "post": {"id": str(removed.pk), "external_id": None, "status": "restored"}}
    assert review_undo(reviewer=carol) is None  # the overturn is final
    assert Post.objects.get(pk=removed.pk).state == "restored"


def test_an_uphold_keeps_the_restriction_and_carries_its_note(api, client_user, found_violating, carol,  # type: ignore[no-untyped-def]
                                                              endpoint):
    appeal = appeal_submit(client=client_user, post_id=found_violating.pk, statement=STATEMENT)

    appeal_decide(appeal=appeal, reviewer=carol, decision="uphold", note=" The slur is legible. ")

    assert Post.objects.get(pk=found_violating.pk).state == "reviewed"
    assert ReviewDecision.objects.filter(reviewer=carol).count() == 0
    event = PostEvent.objects.filter(post=found_violating).order_by("-created_at", "-id").first()
    assert (event.from_state, event.to_state, event.actor, event.detail) == (
        "reviewed", "reviewed", "reviewer:carol", {"action": "appeal_uphold", "appeal": str(appeal.pk)})
    told = WebhookDelivery.objects.get(event_key=f"appeal:{appeal.pk}")
    assert (told.payload["type"], told.payload["appeal"]["decision"], told.payload["appeal"]["note"],
            told.payload["post"]["status"]) == ("post.appeal_decided", "uphold", "The slur is legible.", "reviewed")
    listed = api.get(url(found_violating)).json()
    assert [(a["decision"], a["note"]) for a in listed] == [("uphold", "The slur is legible.")]
    # Decided, the appeal no longer blocks another; a restored post has nothing left to appeal.
    assert api.post(url(found_violating), {"statement": "again"}, format="json").status_code == 201


def test_a_restored_post_is_not_appealable(api, client_user, removed, carol):  # type: ignore[no-untyped-def]
    appeal_decide(appeal=appeal_submit(client=client_user, post_id=removed.pk, statement=STATEMENT),
                  reviewer=carol, decision="overturn")

    response = api.post(url(removed), {"statement": STATEMENT}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "not_appealable")


def test_the_reviewer_who_decided_the_post_is_refused_and_nothing_changes(client_user, found_violating, bob,  # type: ignore[no-untyped-def]
                                                                          endpoint):
    appeal = appeal_submit(client=client_user, post_id=found_violating.pk, statement=STATEMENT)
    before = (PostEvent.objects.count(), ReviewDecision.objects.count(), WebhookDelivery.objects.count())

    with pytest.raises(ServiceError) as refused:
        appeal_decide(appeal=appeal, reviewer=bob, decision="overturn")

    assert (refused.value.code, refused.value.status) == ("appeal_reviewer_involved", 403)
    assert (PostEvent.objects.count(), ReviewDecision.objects.count(), WebhookDelivery.objects.count()) == before
    appeal.refresh_from_db()
    assert (appeal.decision, appeal.decided_by, appeal.decided_at) == ("", None, None)
    assert Post.objects.get(pk=found_violating.pk).state == "reviewed"


def test_a_reviewer_who_only_escalated_the_post_took_part(client_user, bob, carol):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user)
    review_decide(post=post, reviewer=carol, verdict=Verdict.ESCALATE)
    review_decide(post=post, reviewer=bob, verdict=Verdict.VIOLATING, category="hate", reason="slur")
    appeal = appeal_submit(client=client_user, post_id=post.pk, statement=STATEMENT)

    with pytest.raises(ServiceError) as refused:
        appeal_decide(appeal=appeal, reviewer=carol, decision="uphold")

    assert refused.value.code == "appeal_reviewer_involved"


@pytest.mark.parametrize("decision, note, code", [
    ("reverse", "", "appeal_decision_invalid"),
    ("moot", "", "appeal_decision_invalid"),  # the service's outcome, never a reviewer's choice
    ("uphold", "n" * 5001, "appeal_note_invalid"),
])
def test_bad_decisions_are_refused(client_user, removed, carol, decision, note, code):  # type: ignore[no-untyped-def]
    appeal = appeal_submit(client=client_user, post_id=removed.pk, statement=STATEMENT)

    with pytest.raises(ServiceError) as refused:
        appeal_decide(appeal=appeal, reviewer=carol, decision=decision, note=note)

    assert refused.value.code == code
    assert Appeal.objects.get().decided_at is None


def test_an_appeal_is_decided_once(client_user, removed, carol):  # type: ignore[no-untyped-def]
    appeal = appeal_submit(client=client_user, post_id=removed.pk, statement=STATEMENT)
    appeal_decide(appeal=appeal, reviewer=carol, decision="uphold")
    dave = UserFactory(username="dave", is_staff=True)

    with pytest.raises(ServiceError) as refused:
        appeal_decide(appeal=appeal, reviewer=dave, decision="overturn")

    assert (refused.value.code, refused.value.status) == ("appeal_decided", 409)
    assert Post.objects.get(pk=removed.pk).state == "removed"


def _in_thread(fn, results: dict, key: str, start: threading.Barrier, **kwargs) -> None:  # type: ignore[no-untyped-def,type-arg]
    try:
        start.wait(timeout=30)
        results[key] = fn(**kwargs).decision or "opened"
    except ServiceError as exc:
        results[key] = exc.code
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_appeals_and_decisions_leave_one_of_each(client_user, removed, carol):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        require_service("two concurrent connections need PostgreSQL (set DATABASE_URL)")
    results: dict[str, str] = {}
    start = threading.Barrier(2)
    threads = [threading.Thread(target=_in_thread, args=(appeal_submit, results, key, start),
                                kwargs={"client": client_user, "post_id": removed.pk, "statement": STATEMENT})
               for key in ("a", "b")]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]

    assert sorted(results.values()) == ["appeal_open", "opened"]
    appeal = Appeal.objects.get()
    dave, start = UserFactory(username="dave", is_staff=True), threading.Barrier(2)
    threads = [threading.Thread(target=_in_thread, args=(appeal_decide, results, user.username, start),
                                kwargs={"appeal": appeal, "reviewer": user, "decision": "overturn"})
               for user in (carol, dave)]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]

    assert sorted([results["carol"], results["dave"]]) == ["appeal_decided", "overturn"]
    assert ReviewDecision.objects.count() == 1
    assert PostEvent.objects.filter(to_state="restored").count() == 1


def test_undoing_the_appealed_decision_closes_the_appeal_as_moot(api, client_user, found_violating, bob,  # type: ignore[no-untyped-def]
                                                                 endpoint):
    appeal = appeal_submit(client=client_user, post_id=found_violating.pk, statement=STATEMENT)
    WebhookDelivery.objects.all().delete()

    review_undo(reviewer=bob)  # within the undo window: the post is back in review

    appeal.refresh_from_db()
    assert (appeal.decision, appeal.note, appeal.decided_by, appeal.review_decision) == (
        "moot", MOOT_NOTE, None, None)
    assert appeal.decided_at is not None and Post.objects.get(pk=found_violating.pk).state == "needs_review"
    event = PostEvent.objects.get(detail__action="appeal_moot")
    assert (event.from_state, event.to_state, event.actor, event.detail) == (
        "needs_review", "needs_review", "reviewer:bob", {"action": "appeal_moot", "appeal": str(appeal.pk)})
    told = WebhookDelivery.objects.get(event_key=f"appeal:{appeal.pk}")
    assert told.payload == {
        "type": "post.appeal_decided",
        "appeal": {"id": str(appeal.pk), "decision": "moot", "note": MOOT_NOTE,
                   "created_at": appeal.created_at.isoformat(), "decided_at": appeal.decided_at.isoformat()},
        "post": {"id": str(found_violating.pk), "external_id": None, "status": "needs_review"}}
    assert [a["decision"] for a in api.get(url(found_violating)).json()] == ["moot"]
    stats = stats_appeals(since=appeal.created_at)
    assert (stats.opened, stats.decided, stats.by_category, stats.by_source) == (1, 1, [], [])  # no judgment
    # The new decision is a new restriction, with its own appeal.
    review_decide(post=found_violating, reviewer=bob, verdict=Verdict.VIOLATING, category="hate", reason="slur")
    assert api.post(url(found_violating), {"statement": STATEMENT}, format="json").status_code == 201


def test_an_undo_that_leaves_the_appealed_decision_standing_keeps_the_appeal(client_user, bob, carol):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user)
    review_decide(post=post, reviewer=bob, verdict=Verdict.VIOLATING, category="hate", reason="slur")
    appeal = appeal_submit(client=client_user, post_id=post.pk, statement=STATEMENT)
    other = post_in_review(client=client_user)
    review_decide(post=other, reviewer=bob, verdict=Verdict.NOT_VIOLATING)

    review_undo(reviewer=bob)  # bob's last decision is on the other post

    appeal.refresh_from_db()
    assert (appeal.decision, appeal.decided_at) == ("", None)
    assert not PostEvent.objects.filter(detail__action="appeal_moot").exists()


def test_deciding_an_appeal_whose_decision_is_gone_closes_it_as_moot(client_user, found_violating, bob,  # type: ignore[no-untyped-def]
                                                                    carol):
    appeal = appeal_submit(client=client_user, post_id=found_violating.pk, statement=STATEMENT)
    # An appeal left open by an undo before moot closing existed: its decision no longer restricts.
    Appeal.objects.filter(pk=appeal.pk).update(restriction_puid=f"{found_violating.pk}-review-0")
    decisions = ReviewDecision.objects.count()

    decided = appeal_decide(appeal=appeal, reviewer=carol, decision="overturn")

    assert (decided.decision, decided.note, decided.review_decision) == ("moot", MOOT_NOTE, None)
    assert ReviewDecision.objects.count() == decisions
    assert Post.objects.get(pk=found_violating.pk).state == "reviewed"
    assert PostEvent.objects.filter(detail__action="appeal_moot", actor="reviewer:carol").count() == 1


def test_a_restored_post_shows_the_overturn_as_its_review(api, client_user, removed, carol):  # type: ignore[no-untyped-def]
    appeal_decide(appeal=appeal_submit(client=client_user, post_id=removed.pk, statement=STATEMENT),
                  reviewer=carol, decision="overturn")
    label = ReviewDecision.objects.get()
    decided_at = label.created_at.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")

    detail = api.get(reverse("moderation:post-detail", kwargs={"post_id": removed.pk})).json()
    listed = api.get(reverse("moderation:posts")).json()["results"]

    expected = {"verdict": "not_violating", "category": None, "decided_at": decided_at}
    assert (detail["status"], detail["review"]) == ("restored", expected)
    assert [(p["status"], p["review"]) for p in listed] == [("restored", expected)]
