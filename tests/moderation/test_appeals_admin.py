"""The appeals queue in the admin: open appeals listed, decided through the service, refusals shown."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from moderation.models import Appeal, Post, PostEvent, PostState, ReviewDecision
from moderation.selectors.appeals import stats_appeals
from moderation.services.appeals import appeal_decide, appeal_submit
from moderation.services.reviews import review_decide
from tests.factories import AnalysisFactory, PostFactory, UserFactory, post_in_review

pytestmark = pytest.mark.django_db


def _member(username: str, group: str):  # type: ignore[no-untyped-def]
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def groups(db):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())


@pytest.fixture
def rita(groups):  # type: ignore[no-untyped-def]
    return _member("rita", "Reviewer")


def _removed_with_appeal(client_user):  # type: ignore[no-untyped-def]
    post = PostFactory(client=client_user, state=PostState.REMOVED)
    post.current_analysis = AnalysisFactory(post=post, decision="remove")
    post.save()
    return appeal_submit(client=client_user, post_id=post.pk, statement="A news photo.")


def test_the_changelist_is_the_queue_of_open_appeals(client, rita, client_user):  # type: ignore[no-untyped-def]
    waiting = _removed_with_appeal(client_user)
    done = _removed_with_appeal(client_user)
    appeal_decide(appeal=done, reviewer=UserFactory(username="dora"), decision="uphold")
    client.force_login(rita)

    response = client.get(reverse("admin:moderation_appeal_changelist"))

    assert response.status_code == 200
    assert [a.pk for a in response.context["cl"].result_list] == [waiting.pk]
    decided = client.get(reverse("admin:moderation_appeal_changelist") + "?status=decided")
    assert [a.pk for a in decided.context["cl"].result_list] == [done.pk]


def test_a_reviewer_overturns_an_appeal_from_the_admin(client, rita, client_user):  # type: ignore[no-untyped-def]
    appeal = _removed_with_appeal(client_user)
    client.force_login(rita)
    url = reverse("admin:moderation_appeal_decide", args=[appeal.pk])

    assert client.get(url).status_code == 200
    response = client.post(url, {"decision": "overturn", "note": ""})

    assert (response.status_code, response["Location"]) == (302, reverse("admin:moderation_appeal_changelist"))
    appeal.refresh_from_db()
    assert (appeal.decision, appeal.decided_by) == ("overturn", rita)
    assert Post.objects.get(pk=appeal.post_id).state == "restored"


def test_the_admin_closes_as_moot_an_appeal_whose_decision_is_gone_and_never_offers_moot(client, rita,  # type: ignore[no-untyped-def]
                                                                                       client_user):
    appeal = _removed_with_appeal(client_user)
    Appeal.objects.filter(pk=appeal.pk).update(restriction_puid="withdrawn")  # left open before moot closing
    client.force_login(rita)
    url = reverse("admin:moderation_appeal_decide", args=[appeal.pk])
    assert 'value="moot"' not in client.get(url).content.decode()

    response = client.post(url, {"decision": "overturn"}, follow=True)

    appeal.refresh_from_db()
    assert (appeal.decision, appeal.review_decision) == ("moot", None)
    assert f"Appeal {appeal.pk} decided: moot." in response.content.decode()
    assert Post.objects.get(pk=appeal.post_id).state == "removed" and ReviewDecision.objects.count() == 0


def test_the_admin_shows_the_refusal_when_the_reviewer_took_part(client, rita, client_user):  # type: ignore[no-untyped-def]
    post = post_in_review(client=client_user)
    review_decide(post=post, reviewer=rita, verdict="violating", category="hate", reason="slur")
    appeal = appeal_submit(client=client_user, post_id=post.pk, statement="Not a slur.")
    client.force_login(rita)
    url = reverse("admin:moderation_appeal_decide", args=[appeal.pk])
    before = (PostEvent.objects.count(), ReviewDecision.objects.count())

    assert b"You took part in a decision on this post" in client.get(url).content
    response = client.post(url, {"decision": "overturn"})

    assert response.status_code == 403
    assert b"another reviewer must decide the appeal" in response.content
    assert (PostEvent.objects.count(), ReviewDecision.objects.count()) == before
    assert Appeal.objects.get().decided_at is None
    assert Post.objects.get(pk=post.pk).state == "reviewed"


def test_staff_without_the_appeal_permission_cannot_decide(client, groups, client_user):  # type: ignore[no-untyped-def]
    appeal = _removed_with_appeal(client_user)
    client.force_login(UserFactory(username="sam", is_staff=True))

    response = client.post(reverse("admin:moderation_appeal_decide", args=[appeal.pk]), {"decision": "overturn"})

    assert response.status_code == 403
    assert Appeal.objects.get().decided_at is None


def test_the_stats_page_counts_appeals_and_overturn_rates(client, groups, client_user):  # type: ignore[no-untyped-def]
    bob, carol = UserFactory(username="bob"), UserFactory(username="carol")
    engine = [_removed_with_appeal(client_user) for _ in range(3)]
    found = post_in_review(client=client_user)
    review_decide(post=found, reviewer=bob, verdict="violating", category="harassment", reason="threat")
    by_reviewer = appeal_submit(client=client_user, post_id=found.pk, statement="A joke between friends.")
    for appeal, decision in zip([*engine[:2], by_reviewer], ["overturn", "uphold", "overturn"]):
        appeal_decide(appeal=appeal, reviewer=carol, decision=decision)
    Appeal.objects.filter(pk=engine[0].pk).update(decided_at=engine[0].created_at + timedelta(seconds=60))
    Appeal.objects.filter(pk=engine[1].pk).update(decided_at=engine[1].created_at + timedelta(seconds=120))
    Appeal.objects.filter(pk=by_reviewer.pk).update(decided_at=by_reviewer.created_at + timedelta(seconds=600))

    stats = stats_appeals(since=timezone.now() - timedelta(days=1))

    assert (stats.opened, stats.open_now, stats.decided, stats.median_decision_s) == (4, 1, 3, 120.0)
    assert [(r.group, r.decided, r.overturned) for r in stats.by_category] == [("harassment", 1, 1), ("hate", 2, 1)]
    assert [(r.group, r.decided, r.overturned, r.rate) for r in stats.by_source] == [
        ("engine", 2, 1, 0.5), ("reviewer", 1, 1, 1.0)]
    client.force_login(_member("leo", "Lead"))
    page = client.get(reverse("admin:moderation_review_stats")).content.decode()
    assert "4 opened, 3 decided, 1 open now; median time to decision 120 s." in page
    assert "<td>engine</td><td>2</td><td>1</td><td>50 %</td>" in page


def test_the_post_page_lists_its_appeals(client, rita, client_user):  # type: ignore[no-untyped-def]
    appeal = _removed_with_appeal(client_user)
    client.force_login(rita)

    page = client.get(reverse("admin:moderation_review_post", args=[appeal.post_id])).content.decode()

    assert f'<a href="{reverse("admin:moderation_appeal_decide", args=[appeal.pk])}">open</a>' in page
