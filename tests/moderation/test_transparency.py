"""The transparency report: every figure recomputed from the raw rows, the command, the leads' page."""
from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone as dt_timezone
from statistics import median

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from moderation.models import Analysis, Appeal, Category, Notice, Post, PostEvent, PostState, ReviewDecision
from moderation.selectors.transparency import transparency_report
from moderation.services.policies import policy_active, policy_publish
from tests.factories import UserFactory, staff_member

pytestmark = pytest.mark.django_db
UTC = dt_timezone.utc
# Three months of rows; the report asks for the middle one, so rows on both sides must stay out.
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 31)
SPAN_START, SPAN_DAYS = datetime(2026, 2, 1, tzinfo=UTC), 89
ILLEGAL, TERMS = "DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"


def _policies() -> tuple:  # type: ignore[type-arg]
    """v1 as shipped, and v2 mapping hate to illegal content (with its provision) and harassment elsewhere."""
    v1 = policy_active()
    categories = [{"slug": c.slug, "name": c.name, "prompts": c.prompts, "review_threshold": c.review_threshold,
                   "remove_threshold": c.remove_threshold} for c in v1.categories.all()]
    for c in categories:
        if c["slug"] == "hate":
            c.update(dsa_ground=ILLEGAL, legal_ground="StGB § 130")
        if c["slug"] == "harassment":
            c.update(dsa_category="STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN")
    return v1, policy_publish(categories=categories, benign_prompts=v1.benign_prompts)


def _at(rng: random.Random) -> datetime:
    # Whole seconds on both sides of every day boundary, including the period's own edges.
    return SPAN_START + timedelta(seconds=rng.randrange(SPAN_DAYS * 86400))


def _post(rng: random.Random, clients: list, policies: tuple, reviewers: list) -> None:  # type: ignore[type-arg]
    slugs = ["hate", "harassment", "extremism", "violence", "sexual"]
    at, policy = _at(rng), rng.choice(policies)
    decision = rng.choice(["allow", "review", "review", "remove"])
    state = {"allow": PostState.ALLOWED, "review": PostState.NEEDS_REVIEW, "remove": PostState.REMOVED}[decision]
    post = Post.objects.create(client=rng.choice(clients), text="t", state=state, created_at=at - timedelta(seconds=5))
    if rng.random() < 0.2:  # an earlier, failed attempt: its analysis is not the one concluded
        PostEvent.objects.create(post=post, from_state="analyzing", to_state="queued",
                                 created_at=at - timedelta(seconds=3))
    analysis = Analysis.objects.create(post=post, claim_token=post.pk, policy=policy, model_version="m", scores={},
                                       decision=decision, top_category=rng.choice(slugs), created_at=at)
    post.current_analysis = analysis
    PostEvent.objects.create(post=post, from_state="analyzing", to_state=state, created_at=at + timedelta(seconds=1),
                             actor="worker:gpu0")
    if rng.random() < 0.15:  # analysed again later (by a newer policy): the move above concluded the first one
        post.current_analysis = Analysis.objects.create(
            post=post, claim_token=uuid.uuid4(), policy=policies[-1], model_version="m", scores={}, decision="allow",
            top_category="sexual", created_at=at + timedelta(days=40))
    reviewed = _reviews(rng, post, analysis, at, reviewers, slugs) if decision == "review" else []
    _notices(rng, post, at, reviewed, slugs)
    restricted_at = at if decision == "remove" else next(
        (d.created_at for d in reviewed if d.verdict == "violating" and not hasattr(d, "_undone")), None)
    if restricted_at is not None and rng.random() < 0.7:
        _appeal(rng, post, restricted_at, automated=decision == "remove")
    post.save()


def _reviews(rng, post, analysis, at, reviewers, slugs) -> list:  # type: ignore[no-untyped-def,type-arg]
    decisions, t = [], at
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        t += timedelta(seconds=rng.randrange(60, 3 * 86400))
        verdict = rng.choice(["violating", "violating", "not_violating", "escalate"])
        decision = ReviewDecision.objects.create(
            post=post, analysis=analysis if rng.random() < 0.8 else None, reviewer_username=rng.choice(reviewers),
            verdict=verdict, category=rng.choice(slugs) if verdict == "violating" else "", created_at=t)
        if rng.random() < 0.25:
            t += timedelta(seconds=10)
            ReviewDecision.objects.create(post=post, reviewer_username=decision.reviewer_username, verdict="undo",
                                          undoes=decision, created_at=t)
            decision._undone = True
        decisions.append(decision)
    post.state = PostState.REVIEWED if decisions else PostState.NEEDS_REVIEW
    return decisions


def _notices(rng, post, at, reviewed, slugs) -> None:  # type: ignore[no-untyped-def]
    for _ in range(rng.choice([0, 0, 1, 2])):
        noticed = at + timedelta(seconds=rng.randrange(-3600, 86400))
        answer = rng.choice(reviewed) if reviewed and rng.random() < 0.8 else None
        Notice.objects.create(post=post, client=post.client, reporter_type=rng.choice(Notice.ReporterType.values),
                              category=rng.choice(slugs), explanation="e", created_at=noticed, decision=answer,
                              decided_at=answer.created_at if answer else None,
                              outcome="restricted" if answer and answer.verdict == "violating" else "no_action")


def _appeal(rng, post, restricted_at, *, automated) -> None:  # type: ignore[no-untyped-def]
    opened = restricted_at + timedelta(seconds=rng.randrange(60, 20 * 86400))
    outcome = rng.choice(["", "uphold", "overturn", "moot"])
    decided = opened + timedelta(seconds=rng.randrange(60, 10 * 86400)) if outcome else None
    Appeal.objects.create(post=post, client=post.client, statement="s", created_at=opened, restriction_puid="p",
                          restriction_category="hate", restriction_automated=automated, decision=outcome,
                          decided_at=decided)


@pytest.fixture
def rows(db):  # type: ignore[no-untyped-def]
    rng = random.Random(14)
    clients = [UserFactory(username="acme"), UserFactory(username="globex")]
    policies = _policies()
    for _ in range(300):
        _post(rng, clients, policies, ["bob", "carol", "dave"])
    return clients


# The reference: plain loops over every raw row, sharing no code with the selector.

def _client_ok(client_id: int, client) -> bool:  # type: ignore[no-untyped-def]
    return client is None or client_id == client.pk


def _mapping(policy_id: int, slug: str) -> tuple[str, str]:
    category = Category.objects.filter(policy_id=policy_id, slug=slug).first()
    if category is None:
        return "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", TERMS
    illegal = category.dsa_ground == ILLEGAL and bool(category.legal_ground)
    return category.dsa_category, ILLEGAL if illegal else TERMS


def _expected(client=None, first: date = FIRST, last: date = LAST) -> dict:  # type: ignore[no-untyped-def,type-arg]
    def _in(moment: datetime | None) -> bool:
        return moment is not None and first <= moment.astimezone(UTC).date() <= last

    posts = {p.pk: p for p in Post.objects.all()}
    analyses = list(Analysis.objects.all())
    decisions = {d.pk: d for d in ReviewDecision.objects.all()}
    undone = {d.undoes_id for d in decisions.values() if d.undoes_id}
    notices = [n for n in Notice.objects.all() if _in(n.created_at) and _client_ok(n.client_id, client)]
    actions, kinds = Counter(), Counter()  # type: ignore[var-annotated]
    for event in PostEvent.objects.all():
        post = posts[event.post_id]
        if event.from_state != "analyzing" or event.to_state == "queued" or not _in(event.created_at) \
                or not _client_ok(post.client_id, client):
            continue
        concluded = max((a for a in analyses if a.post_id == post.pk and a.created_at <= event.created_at),
                        key=lambda a: a.created_at)
        outcome = {"removed": "restrict", "allowed": "no_action", "needs_review": "referred_to_review"}[event.to_state]
        kinds[("automated", outcome)] += 1
        if outcome == "restrict":
            actions[(concluded.top_category, *_mapping(concluded.policy_id, concluded.top_category), "automated")] += 1
    for d in decisions.values():
        post = posts[d.post_id]
        if d.verdict not in ("violating", "not_violating") or d.pk in undone or not _in(d.created_at) \
                or not _client_ok(post.client_id, client):
            continue
        kinds[("human", "restrict" if d.verdict == "violating" else "no_action")] += 1
        if d.verdict == "violating":
            policy_id = Analysis.objects.get(pk=d.analysis_id or post.current_analysis_id).policy_id
            actions[(d.category, *_mapping(policy_id, d.category), "human")] += 1
    waits = [(decisions[n.decision_id].created_at - n.created_at).total_seconds() for n in notices
             if n.decision_id and n.decision_id not in undone and decisions[n.decision_id].created_at >= n.created_at]
    appeals = [a for a in Appeal.objects.all() if _client_ok(a.client_id, client)]
    decided = [a for a in appeals if _in(a.decided_at)]
    return {
        "notices": sorted(Counter((n.category, n.reporter_type) for n in notices).items()),
        "actions": sorted(actions.items()), "decisions": sorted(kinds.items()),
        "notices_decided": len(waits), "median_notice_to_action_s": median(waits) if waits else None,
        "appeals_opened": sum(_in(a.created_at) for a in appeals),
        "appeals_decided": sorted(Counter(("automated" if a.restriction_automated else "human", a.decision)
                                          for a in decided).items()),
        "median_appeal_decision_s": median([(a.decided_at - a.created_at).total_seconds() for a in decided])
        if decided else None,
    }


def _actual(report) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {
        "notices": [((n.category, n.reporter_type), n.count) for n in report.notices],
        "actions": [((a.category, a.dsa_category, a.ground, a.source), a.count) for a in report.actions],
        "decisions": [((d.source, d.outcome), d.count) for d in report.decisions],
        "notices_decided": report.notices_decided, "median_notice_to_action_s": report.median_notice_to_action_s,
        "appeals_opened": report.appeals_opened,
        "appeals_decided": [((a.source, a.outcome), a.count) for a in report.appeals_decided],
        "median_appeal_decision_s": report.median_appeal_decision_s,
    }


@pytest.mark.parametrize("which", [None, 0, 1])
def test_every_figure_matches_a_recount_of_the_raw_rows(rows, which):  # type: ignore[no-untyped-def]
    client = None if which is None else rows[which]

    report = transparency_report(first=FIRST, last=LAST, client=client)

    expected = _expected(client)
    assert _actual(report) == expected
    # The data exercises every branch: both sources, both grounds, several outcomes, rows left out.
    assert {key[3] for key, _ in expected["actions"]} == {"automated", "human"}
    assert {key[2] for key, _ in expected["actions"]} == {ILLEGAL, TERMS}
    assert {key for key, _ in expected["decisions"]} >= {("automated", "restrict"), ("human", "no_action")}
    assert len(expected["appeals_decided"]) >= 4 and expected["notices_decided"] >= 3


def test_the_period_and_the_client_leave_rows_out(rows):  # type: ignore[no-untyped-def]
    everything = transparency_report(first=date(2000, 1, 1), last=date(2100, 1, 1))
    march = transparency_report(first=FIRST, last=LAST)
    per_client = [transparency_report(first=FIRST, last=LAST, client=c) for c in rows]

    assert sum(n.count for n in everything.notices) == Notice.objects.count()
    assert sum(n.count for n in march.notices) < Notice.objects.count()
    assert sum(n.count for n in march.notices) == sum(n.count for r in per_client for n in r.notices)
    assert march.appeals_opened == sum(r.appeals_opened for r in per_client)
    assert all(r.appeals_opened > 0 for r in per_client)
    day = date(2026, 3, 14)
    assert _actual(transparency_report(first=day, last=day)) == _expected(first=day, last=day)


def test_an_empty_period_has_zeros_and_no_medians(db):  # type: ignore[no-untyped-def]
    report = transparency_report(first=FIRST, last=LAST)

    assert (report.notices, report.actions, report.decisions, report.appeals_decided) == ([], [], [], [])
    assert (report.notices_decided, report.median_notice_to_action_s, report.appeals_opened,
            report.median_appeal_decision_s) == (0, None, 0, None)


def test_the_command_writes_the_same_figures_as_json_and_csv(rows):  # type: ignore[no-untyped-def]
    report = transparency_report(first=FIRST, last=LAST, client=rows[0])
    args = ["moderation_transparency_report", "--from", "2026-03-01", "--to", "2026-03-31", "--client", "acme"]

    as_json, as_csv = io.StringIO(), io.StringIO()
    call_command(*args, "--format", "json", stdout=as_json)
    call_command(*args, "--format", "csv", stdout=as_csv)

    assert json.loads(as_json.getvalue()) == json.loads(json.dumps(report.as_dict()))
    assert json.loads(as_json.getvalue())["client"] == "acme"
    assert list(json.loads(as_json.getvalue()))[:2] == ["from", "to"]  # as the options and the CSV name them
    lines = list(csv.DictReader(io.StringIO(as_csv.getvalue())))
    assert {(r["from"], r["to"], r["client"]) for r in lines} == {("2026-03-01", "2026-03-31", "acme")}
    assert [(r["category"], r["reporter_type"], int(r["value"])) for r in lines if r["section"] == "notices"] == [
        (n.category, n.reporter_type, n.count) for n in report.notices]
    assert [(r["category"], r["dsa_category"], r["ground"], r["source"], int(r["value"]))
            for r in lines if r["section"] == "actions"] == [
        (a.category, a.dsa_category, a.ground, a.source, a.count) for a in report.actions]
    single = {r["section"]: r["value"] for r in lines}
    assert float(single["median_notice_to_action_s"]) == report.median_notice_to_action_s
    assert int(single["appeals_opened"]) == report.appeals_opened


@pytest.mark.parametrize("first, last, client, message", [
    ("2026-03-31", "2026-03-01", "", "starts (2026-03-31) after it ends"),
    ("2026-3-1x", "2026-03-31", "", "dates must be YYYY-MM-DD"),
    ("2026-03-01", "2026-03-31", "nobody", "no client is named 'nobody'"),
])
def test_the_command_refuses_a_bad_period_or_client(db, first, last, client, message):  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("moderation_transparency_report", "--from", first, "--to", last, "--client", client,
                     stdout=io.StringIO())


def _url(**params: str) -> str:
    return reverse("admin:moderation_transparency_report") + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def _snapshot() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Post, PostEvent, ReviewDecision, Notice, Appeal))


def test_only_leads_see_the_report(client, groups, rows):  # type: ignore[no-untyped-def]
    before = _snapshot()
    url = _url(**{"from": "2026-03-01", "to": "2026-03-31"})

    anonymous = client.get(url)
    client.force_login(staff_member("rita", "Reviewer"))
    as_reviewer = [client.get(url), client.get(url + "&format=csv"), client.get(url + "&format=json")]
    reviewer_index = client.get(reverse("admin:index")).content.decode()
    client.force_login(staff_member("leo", "Lead"))
    as_lead = client.get(url)
    lead_index = client.get(reverse("admin:index")).content.decode()

    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert [r.status_code for r in as_reviewer] == [403, 403, 403]
    link = f'href="{reverse("admin:moderation_transparency_report")}"'
    assert link not in reviewer_index and link in lead_index
    assert as_lead.status_code == 200 and _snapshot() == before
    page, report = as_lead.content.decode(), transparency_report(first=FIRST, last=LAST)
    for n in report.notices:
        assert f"<tr><td>{n.category}</td><td>{n.reporter_type}</td><td>{n.count}</td></tr>" in page
    for a in report.actions:
        assert (f'<tr><td>{a.category}</td><td class="mod-key">{a.dsa_category}</td><td class="mod-key">{a.ground}'
                f"</td><td>{a.source}</td><td>{a.count}</td></tr>") in page
    for d in report.decisions:
        assert f"<tr><td>{d.source}</td><td>{d.outcome}</td><td>{d.count}</td></tr>" in page
    assert f"{report.appeals_opened} appeals opened; median time to decision " in page


def test_a_lead_downloads_the_csv_and_a_bad_period_is_400(client, groups, rows):  # type: ignore[no-untyped-def]
    client.force_login(staff_member("leo", "Lead"))

    download = client.get(_url(**{"from": "2026-03-01", "to": "2026-03-31", "client": "globex", "format": "csv"}))
    bad = client.get(_url(**{"from": "2026-04-01", "to": "2026-03-31"}))

    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(download.content.decode())))
    report = transparency_report(first=FIRST, last=LAST, client=rows[1])
    assert [(r["source"], r["outcome"], int(r["value"])) for r in lines if r["section"] == "decisions"] == [
        (d.source, d.outcome, d.count) for d in report.decisions]
    assert bad.status_code == 400
    assert "the period starts (2026-04-01) after it ends (2026-03-31)." in bad.content.decode()
