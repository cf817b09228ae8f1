"""The transparency report on data made as users make it: posts submitted through the API and
analysed by a real worker, notices and appeals through the API, reviews and appeal decisions
through the services the admin calls, then the leads' page read as a lead."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from moderation.models import Notice, Post, PostState
from moderation.selectors.transparency import transparency_report
from moderation.services.appeals import appeal_decide
from moderation.services.policies import policy_active, policy_publish
from moderation.services.reviews import review_decide
from tests.factories import UserFactory, staff_member
from tests.workers.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED}
TERMS = "DECISION_GROUND_INCOMPATIBLE_CONTENT"


def _png(shade: int) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (shade, 255 - shade, 90)).save(buffer, format="PNG")
    buffer.name = "meme.png"
    buffer.seek(0)
    return buffer


def _publish(*, review: float, remove: float) -> None:
    """A policy version whose every category has these thresholds (mappings inherited)."""
    categories = [{"slug": c.slug, "name": c.name, "prompts": c.prompts, "review_threshold": review,
                   "remove_threshold": remove} for c in policy_active().categories.order_by("position")]
    policy_publish(categories=categories, benign_prompts=policy_active().benign_prompts)


def _submit_and_wait(api, shades: range) -> list[Post]:  # type: ignore[no-untyped-def]
    ids = [api.post(reverse("moderation:posts"), {"image": _png(s), "text": f"meme {s}"},
                    format="multipart").json()["id"] for s in shades]
    wait_until(lambda: Post.objects.filter(pk__in=ids, state__in=FINAL).count() == len(ids), timeout=180,
               interval=0.25, message="every post analysed")
    return [Post.objects.select_related("current_analysis").get(pk=i) for i in ids]


def test_the_report_counts_what_the_pipeline_wrote(api, client_user, start_worker, client):  # type: ignore[no-untyped-def]
    start_worker()
    _publish(review=0.0, remove=0.0)  # every post scores at least 0: the engine removes all
    removed = _submit_and_wait(api, range(10, 40, 15))
    _publish(review=1.0, remove=1.0)  # nothing reaches 1.0: the engine allows all
    allowed = _submit_and_wait(api, range(100, 160, 20))
    assert [p.state for p in removed + allowed] == ["removed"] * 2 + ["allowed"] * 3

    def notice(post: Post, reporter_type: str, category: str) -> None:
        response = api.post(reverse("moderation:post-notices", kwargs={"post_id": post.pk}),
                            {"reporter_type": reporter_type, "category": category, "explanation": "Look."},
                            format="json")
        assert response.status_code == 201, response.content

    def appeal(post: Post) -> None:
        response = api.post(reverse("moderation:post-appeals", kwargs={"post_id": post.pk}),
                            {"statement": "A news photo."}, format="json")
        assert response.status_code == 201, response.content

    notice(allowed[0], "trusted_flagger", "hate")
    notice(allowed[1], "user", "harassment")
    bob, carol = UserFactory(username="bob", is_staff=True), UserFactory(username="carol", is_staff=True)
    review_decide(post=allowed[0], reviewer=bob, verdict="violating", category="hate", reason="A slur.")
    review_decide(post=allowed[1], reviewer=bob, verdict="not_violating")
    appeal(removed[0])
    appeal(allowed[0])
    for post, decision in ((removed[0], "overturn"), (allowed[0], "uphold")):
        appeal_decide(appeal=post.appeals.get(), reviewer=carol, decision=decision)

    today = timezone.now().date()
    report = transparency_report(first=today - timedelta(days=1), last=today + timedelta(days=1))

    assert [(n.category, n.reporter_type, n.count) for n in report.notices] == [
        ("harassment", "user", 1), ("hate", "trusted_flagger", 1)]
    engine_categories = sorted(p.current_analysis.top_category for p in removed)
    dsa = dict(policy_active().categories.values_list("slug", "dsa_category"))
    expected_actions = [(c, dsa[c], TERMS, "automated") for c in engine_categories]
    expected_actions.append(("hate", "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", TERMS, "human"))
    assert sorted((a.category, a.dsa_category, a.ground, a.source) for a in report.actions for _ in range(a.count)) \
        == sorted(expected_actions)
    # The overturn is a human "not violating" decision in the ledger, beside bob's.
    assert [(d.source, d.outcome, d.count) for d in report.decisions] == [
        ("automated", "no_action", 3), ("automated", "restrict", 2), ("human", "no_action", 2),
        ("human", "restrict", 1)]
    waits = sorted((n.decision.created_at - n.created_at).total_seconds() for n in Notice.objects.all())
    assert (report.notices_decided, report.median_notice_to_action_s) == (2, (waits[0] + waits[1]) / 2)
    assert report.appeals_opened == 2
    assert [(a.source, a.outcome, a.count) for a in report.appeals_decided] == [
        ("automated", "overturn", 1), ("human", "uphold", 1)]

    call_command("moderation_setup_groups", stdout=io.StringIO())
    client.force_login(staff_member("leo", "Lead"))
    page = client.get(reverse("admin:moderation_transparency_report"),
                      {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()})
    assert page.status_code == 200
    text = page.content.decode()
    assert "<tr><td>hate</td><td>trusted_flagger</td><td>1</td></tr>" in text
    assert "<tr><td>automated</td><td>restrict</td><td>2</td></tr>" in text
    assert "<tr><td>human</td><td>uphold</td><td>1</td></tr>" in text
    assert "2 notices decided by a reviewer; median time from notice to action" in text
