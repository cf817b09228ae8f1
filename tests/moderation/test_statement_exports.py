"""Export to the DSA Transparency Database: stored PUIDs, batches, and the submitter against a real local
HTTP server that checks every request as the database would (never the real database or its sandbox)."""
from __future__ import annotations

import inspect
import json
import logging
import re
import ssl
import threading
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as tz
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any, Iterator

import jsonschema
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from moderation.models import Analysis, Post, ReviewDecision, StatementExport
from moderation.services.analysis import analysis_record_batch, post_claim_batch
from moderation.services.appeals import appeal_decide, appeal_submit
from moderation.services.policies import policy_active
from moderation.services.retention import post_content_purge
from moderation.services.reviews import review_decide, review_undo
from moderation.services.statement_exports import statement_exports_record
from moderation.services.transparency_db import statements_submit_due, transparency_db_submit
from tests.conftest import require_service, tls_server_context
from tests.factories import PostFactory, UserFactory, staff_member
from tests.moderation.test_statements import SCHEMA
from vlm_engine.types import Analysis as EngineAnalysis
from workers.tasks import submit_statements

pytestmark = pytest.mark.django_db
TOKEN = "X|ybqkCFX7ZkIFoLxtI0VAk1JBzMR9jVk4c4EU-test"


class FakeTransparencyDatabase:
    """POST /api/v1/statements as the database answers it: Bearer token, 1 to 100 statements, each valid,
    PUIDs unique per platform (422 with ``existing_puids``), 201 with a uuid per statement. ``script``
    holds answers to give first: a status, or "store-then-500" (stores the batch, loses the answer)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stored: dict[str, str] = {}  # puid -> uuid
        self.script: list[int | str] = []
        self.problems: list[str] = []
        self.delay = 0.0  # seconds each answer takes
        database = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, answer = database.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        payload = json.loads(body)
        time.sleep(self.delay)
        self.requests.append({"path": path, "headers": headers, "payload": payload})
        if path != "/api/v1/statements" or headers.get("content-type") != "application/json":
            self.problems.append(f"{path} {headers.get('content-type')}")
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "Unauthenticated."}
        statements = payload.get("statements")
        if not isinstance(statements, list) or not 1 <= len(statements) <= 100 or set(payload) != {"statements"}:
            self.problems.append(f"batch shape {list(payload)} of {len(statements or [])}")
            return 422, {"message": "The statements field must have between 1 and 100 items."}
        scripted = self.script.pop(0) if self.script else None
        if isinstance(scripted, int):
            return scripted, {"message": "Service Unavailable"}
        invalid = {f"statement_{i}": [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(s)]
                   for i, s in enumerate(statements)}
        if invalid := {k: v for k, v in invalid.items() if v}:
            return 422, {"errors": invalid}
        if existing := [s["puid"] for s in statements if s["puid"] in self.stored]:
            return 422, {"message": "The platform identifier(s) are not all unique within this platform.",
                         "errors": {"puid": ["not unique"], "existing_puids": existing}}
        created = [{**s, "uuid": str(uuid.uuid4())} for s in statements]
        self.stored.update({s["puid"]: s["uuid"] for s in created})
        if scripted == "store-then-500":
            return 500, {"message": "Server Error"}
        return 201, {"statements": created}

    def puids_sent(self) -> list[str]:
        return [s["puid"] for r in self.requests for s in r["payload"]["statements"]]


@pytest.fixture
def database(settings) -> Iterator[FakeTransparencyDatabase]:  # type: ignore[no-untyped-def]
    db = FakeTransparencyDatabase()
    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_URL": db.url, "TRANSPARENCY_DB_TOKEN": TOKEN}
    yield db
    db.server.shutdown()
    assert db.problems == []


def removed(client: Any, count: int, *, at: datetime | None = None) -> list[Post]:
    """Posts the engine removed, through a real claim and record; ``at`` dates the removals."""
    posts = [PostFactory(client=client) for _ in range(count)]
    token, claimed = post_claim_batch(limit=count, worker="gpu0")
    analysis_record_batch(token=token, policy=policy_active(), worker="gpu0", results=[EngineAnalysis(
        key=str(p.pk), scores={"hate": 0.97}, image_embedding=None, text_embedding=(0.6, 0.8),
        model_version="clip:test", timings_ms={}) for p in claimed])
    if at is not None:
        Analysis.objects.filter(post__in=posts).update(created_at=at)
    return list(Post.objects.filter(pk__in=[p.pk for p in posts]).select_related("current_analysis"))


def reviewed_violating(client: Any, reviewer: Any) -> ReviewDecision:
    """A post held for review and found violating, a while ago (past the reviewer's undo window)."""
    post = PostFactory(client=client)
    token, _ = post_claim_batch(limit=1, worker="gpu0")
    analysis_record_batch(token=token, policy=policy_active(), worker="gpu0", results=[EngineAnalysis(
        key=str(post.pk), scores={"hate": 0.6}, image_embedding=None, text_embedding=(0.6, 0.8),
        model_version="clip:test", timings_ms={})])
    decision = review_decide(post=post, reviewer=reviewer, verdict="violating", category="hate", reason="A slur.")
    return aged(decision)


def aged(decision: ReviewDecision) -> ReviewDecision:
    ReviewDecision.objects.filter(pk=decision.pk).update(created_at=F("created_at") - timedelta(minutes=5))
    return ReviewDecision.objects.get(pk=decision.pk)


def export(*args: str) -> tuple[list[dict[str, Any]], str]:
    out, err = StringIO(), StringIO()
    call_command("moderation_export_statements", *args, stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def states() -> dict[str, int]:
    found: dict[str, int] = {}
    for state in StatementExport.objects.values_list("state", flat=True):
        found[state] = found.get(state, 0) + 1
    return found


def due_now() -> None:
    """Time passes: every waiting retry comes due."""
    StatementExport.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


# The submitter


def test_batches_of_at_most_100_valid_statements_with_the_bearer_token(client_user, database):  # type: ignore[no-untyped-def]
    posts = removed(client_user, 101)

    assert transparency_db_submit() == {"submitted": 101, "retrying": 0, "failed": 0, "refused": 0}

    assert [len(r["payload"]["statements"]) for r in database.requests] == [100, 1]
    assert {r["headers"]["authorization"] for r in database.requests} == {f"Bearer {TOKEN}"}
    assert {r["headers"]["accept"] for r in database.requests} == {"application/json"}
    expected = {f"{p.pk}-analysis-{p.current_analysis_id}" for p in posts}
    assert set(database.stored) == expected and len(database.puids_sent()) == 101
    assert states() == {"submitted": 101}
    assert {e.puid: e.database_uuid for e in StatementExport.objects.all()} == database.stored
    assert transparency_db_submit() == {"submitted": 0, "retrying": 0, "failed": 0, "refused": 0}
    assert len(database.requests) == 2  # nothing is sent twice


def test_a_failing_database_is_retried_with_backoff_and_nothing_is_sent_twice(client_user, database):  # type: ignore[no-untyped-def]
    removed(client_user, 3)
    database.script = [503, 503]
    before = timezone.now()

    first = transparency_db_submit()

    assert first == {"submitted": 0, "retrying": 3, "failed": 0, "refused": 0}
    exports = list(StatementExport.objects.all())
    assert {(e.state, e.attempts, e.last_status_code, e.last_error) for e in exports} == {
        ("pending", 1, 503, "http_503")}
    assert all(e.next_attempt_at >= before + timedelta(seconds=60) for e in exports)  # the first delay
    assert transparency_db_submit()["retrying"] == 0 and len(database.requests) == 1  # not due yet

    due_now()
    assert transparency_db_submit() == {"submitted": 0, "retrying": 3, "failed": 0, "refused": 0}
    second = StatementExport.objects.first()
    assert second.next_attempt_at >= timezone.now() + timedelta(seconds=299)  # the second delay, 300 s

    due_now()
    assert transparency_db_submit() == {"submitted": 3, "retrying": 0, "failed": 0, "refused": 0}
    due_now()
    assert transparency_db_submit()["submitted"] == 0
    assert len(database.requests) == 3 and len(database.stored) == 3
    assert states() == {"submitted": 3}
    assert set(StatementExport.objects.values_list("attempts", flat=True)) == {3}


def test_an_answer_lost_after_the_database_stored_the_batch_is_not_a_duplicate(client_user, database):  # type: ignore[no-untyped-def]
    removed(client_user, 2)
    database.script = ["store-then-500"]

    assert transparency_db_submit()["retrying"] == 2
    due_now()
    assert transparency_db_submit() == {"submitted": 2, "retrying": 0, "failed": 0, "refused": 0}

    assert len(database.stored) == 2 and len(database.requests) == 2  # the second was answered 422, not stored
    assert {(e.state, e.last_status_code) for e in StatementExport.objects.all()} == {("submitted", 422)}


@pytest.mark.django_db(transaction=True)
def test_two_submitters_at_once_send_each_statement_once(client_user, database):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        require_service("two concurrent connections need PostgreSQL (set DATABASE_URL)")
    removed(client_user, 150)
    statement_exports_record()
    database.delay = 0.5
    start, results = threading.Barrier(2), []

    def submitter() -> None:
        try:
            start.wait(timeout=30)
            results.append(statements_submit_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=submitter) for _ in range(2)]
    [t.start() for t in threads]
    [t.join(timeout=60) for t in threads]

    # How the rows split between the two depends on which one locks each row first (SKIP LOCKED);
    # what must hold is that together they sent every statement exactly once.
    assert len(results) == 2 and sum(r["submitted"] for r in results) == 150
    assert len(database.puids_sent()) == len(set(database.puids_sent())) == 150
    assert states() == {"submitted": 150}


def test_retries_run_out_then_failed_and_an_export_with_submit_sends_again(client_user, database, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_RETRY_DELAYS": [0]}
    removed(client_user, 1)
    database.script = [500, 502]

    results = [transparency_db_submit() for _ in range(3)]

    assert [(r["retrying"], r["failed"]) for r in results] == [(1, 0), (0, 1), (0, 0)]
    assert (StatementExport.objects.get().state, StatementExport.objects.get().attempts) == ("failed", 2)
    _, summary = export("--since", "2000-01-01", "--submit")
    assert "1 submitted" in summary and states() == {"submitted": 1}
    assert len(database.requests) == 3


def test_a_refused_batch_keeps_the_database_s_answer(client_user, database, settings):  # type: ignore[no-untyped-def]
    removed(client_user, 2)
    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_TOKEN": "revoked"}

    assert transparency_db_submit() == {"submitted": 0, "retrying": 0, "failed": 0, "refused": 2}
    assert {(e.state, e.last_status_code, e.last_error) for e in StatementExport.objects.all()} == {
        ("refused", 401, "http_401: Unauthenticated.")}
    assert transparency_db_submit()["refused"] == 0 and len(database.requests) == 1  # never retried by itself

    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_TOKEN": TOKEN}
    export("--since", "2000-01-01", "--submit")
    assert states() == {"submitted": 2} and len(database.stored) == 2


def test_a_statement_the_database_names_as_invalid_is_refused_alone(client_user, database):  # type: ignore[no-untyped-def]
    removed(client_user, 3)
    statement_exports_record()
    broken = StatementExport.objects.order_by("restricted_at", "id")[1]
    broken.statement = {**broken.statement, "category": "hate"}
    broken.save(update_fields=["statement"])

    assert transparency_db_submit() == {"submitted": 2, "retrying": 0, "failed": 0, "refused": 1}

    broken.refresh_from_db()
    assert (broken.state, broken.last_status_code) == ("refused", 422)
    assert broken.last_error.startswith('http_422: ["') and "'hate' is not one of" in broken.last_error
    assert states() == {"submitted": 2, "refused": 1} and broken.puid not in database.stored
    assert [len(r["payload"]["statements"]) for r in database.requests] == [3, 2]


def test_the_token_is_in_no_log_task_argument_error_or_check(client_user, database, settings, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    removed(client_user, 1)
    database.script = [503]

    submit_statements.apply()  # the task, as beat sends it: no arguments
    due_now()
    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_TOKEN": TOKEN + "-wrong"}
    submit_statements.apply()

    assert inspect.signature(submit_statements.run).parameters == {}
    assert "HTTP 503" in caplog.text and "HTTP 401" in caplog.text
    assert TOKEN not in caplog.text
    assert all(TOKEN not in e.last_error for e in StatementExport.objects.all())
    from django.core.checks import run_checks

    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_URL": "http://tdb.example.com"}
    messages = [str(m) for m in run_checks() if m.id == "moderation.E016"]
    assert len(messages) == 1 and TOKEN not in messages[0]


def test_leads_see_what_the_database_refused_and_the_backlog_and_nobody_deletes_a_record(client, client_user, database, settings,  # type: ignore[no-untyped-def]
                                                                       groups):
    removed(client_user, 1)
    settings.MODERATION = {**settings.MODERATION, "TRANSPARENCY_DB_TOKEN": "revoked"}
    transparency_db_submit()
    export = StatementExport.objects.get()
    changelist = reverse("admin:moderation_statementexport_changelist")

    client.force_login(staff_member("rita", "Reviewer"))
    assert client.get(changelist).status_code == 403
    client.force_login(staff_member("leo", "Lead"))
    page = client.get(changelist + "?state=refused")
    delete = client.post(reverse("admin:moderation_statementexport_delete", args=[export.pk]), {"post": "yes"})

    assert page.status_code == 200 and export.puid in page.text and "http_401: Unauthenticated." in page.text
    assert delete.status_code == 403 and StatementExport.objects.filter(pk=export.pk, state="refused").exists()
    removed(client_user, 1)
    statement_exports_record()
    stats = client.get(reverse("admin:moderation_review_stats")).text
    backlog = re.search(r'data-testid="statement-backlog">([^<]*)', stats).group(1)
    assert re.fullmatch(r"Statements of reasons for the Transparency Database: 0 submitted, 1 waiting \(the oldest "
                        r"decided 0\xa0minutes ago\), 0 failed, 1 refused\. ", backlog), backlog


def test_https_verifies_the_database_s_certificate_before_the_token_leaves(client_user, database, settings,  # type: ignore[no-untyped-def]
                                                                          tmp_path, monkeypatch):
    context, cert = tls_server_context(tmp_path, "localhost")
    database.server.socket = context.wrap_socket(database.server.socket, server_side=True)
    settings.MODERATION = {**settings.MODERATION,
                           "TRANSPARENCY_DB_URL": f"https://localhost:{database.server.server_port}"}
    removed(client_user, 1)

    assert transparency_db_submit()["retrying"] == 1
    assert database.requests == [] and StatementExport.objects.get().last_error == "tls"

    trusting_the_test_ca = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(ssl, "create_default_context", lambda: trusting_the_test_ca)
    due_now()
    assert transparency_db_submit()["submitted"] == 1 and len(database.stored) == 1


def test_the_submitter_is_off_without_a_url(client_user, settings):  # type: ignore[no-untyped-def]
    removed(client_user, 1)

    assert transparency_db_submit() == {} and not StatementExport.objects.exists()
    with pytest.raises(CommandError, match="TRANSPARENCY_DB_URL"):
        export("--since", "2000-01-01", "--submit")


# The export command


def test_export_writes_the_period_s_statements_as_batches(client_user):  # type: ignore[no-untyped-def]
    days = [datetime(2026, 11, d, 12, tzinfo=tz.utc) for d in (1, 2, 3, 4)]
    posts = [removed(client_user, 1, at=day)[0] for day in days]

    batches, summary = export("--since", "2026-11-02", "--until", "2026-11-04")

    assert len(batches) == 1 and set(batches[0]) == {"statements"}
    statements = batches[0]["statements"]
    assert [s["puid"] for s in statements] == [f"{p.pk}-analysis-{p.current_analysis_id}" for p in posts[1:3]]
    assert [s["application_date"] for s in statements] == ["2026-11-02", "2026-11-03"]
    assert all(not list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(s)) for s in statements)
    assert summary.strip() == "Exported 2 statements in 1 batches (2 newly recorded)."
    assert StatementExport.objects.count() == 2  # only the period's decisions were recorded
    assert not StatementExport.objects.exclude(state="pending").exists()


def test_since_and_until_take_moments_too(client_user):  # type: ignore[no-untyped-def]
    first, second = (removed(client_user, 1, at=datetime(2026, 11, 2, h, tzinfo=tz.utc))[0] for h in (8, 9))

    batches, _ = export("--since", "2026-11-02T08:30:00Z", "--until", "2026-11-02T09:00:01+00:00")

    assert [s["puid"] for s in batches[0]["statements"]] == [f"{second.pk}-analysis-{second.current_analysis_id}"]
    assert export("--since", "2026-11-03")[0] == []


def test_export_to_a_directory_in_files_of_at_most_100(client_user, tmp_path):  # type: ignore[no-untyped-def]
    removed(client_user, 101, at=datetime(2026, 11, 2, tzinfo=tz.utc))
    out = tmp_path / "sor"

    _, summary = export("--since", "2026-11-01", "--output", str(out))

    files = sorted(p.name for p in out.iterdir())
    assert files == ["statements-0001.json", "statements-0002.json"]
    sizes = [len(json.loads((out / name).read_text())["statements"]) for name in files]
    assert sizes == [100, 1] and "Exported 101 statements in 2 batches" in summary
    with pytest.raises(CommandError, match="already holds statements"):
        export("--since", "2026-11-01", "--output", str(out))
    assert sizes == [len(json.loads((out / name).read_text())["statements"]) for name in files]


@pytest.mark.parametrize(("args", "message"), [
    (("--since", "yesterday"), "--since must be a date"),
    (("--since", "2026-13-01"), "--since must be a date"),
    (("--since", "2026-11-02", "--until", "2026-11-02"), "must be after --since"),
])
def test_bad_dates_are_refused_with_nothing_recorded(client_user, args, message):  # type: ignore[no-untyped-def]
    removed(client_user, 1, at=datetime(2026, 11, 2, tzinfo=tz.utc))

    with pytest.raises(CommandError, match=message):
        export(*args)

    assert not StatementExport.objects.exists()


# PUIDs


def test_a_re_export_gives_the_same_puids_and_statements(client_user):  # type: ignore[no-untyped-def]
    removed(client_user, 2, at=datetime(2026, 11, 2, tzinfo=tz.utc))
    first, _ = export("--since", "2026-11-01")
    Post.objects.update(text="edited after the decision")  # the statement is kept as first exported

    again, summary = export("--since", "2026-11-01")

    assert again == first and "(0 newly recorded)" in summary
    assert StatementExport.objects.count() == 2


def test_a_restriction_undone_and_made_again_gets_a_new_puid(client_user):  # type: ignore[no-untyped-def]
    reviewer = UserFactory(username="alice", is_staff=True)
    first = reviewed_violating(client_user, reviewer)
    before, _ = export("--since", "2000-01-01")

    review_undo(reviewer=reviewer, within_seconds=3600)
    second = aged(review_decide(post=first.post, reviewer=reviewer, verdict="violating", category="hate",
                                reason="A slur, and a threat."))
    after, _ = export("--since", "2000-01-01")

    puids = [s["puid"] for s in after[0]["statements"]]
    assert [s["puid"] for s in before[0]["statements"]] == [f"{first.post_id}-review-{first.pk}"]
    assert puids == [f"{first.post_id}-review-{first.pk}", f"{first.post_id}-review-{second.pk}"]
    assert after[0]["statements"][1]["incompatible_content_explanation"] == "A slur, and a threat."


def test_an_overturned_restriction_keeps_its_puid_and_adds_none(client_user):  # type: ignore[no-untyped-def]
    post = removed(client_user, 1)[0]
    before, _ = export("--since", "2000-01-01")
    appeal = appeal_submit(client=client_user, post_id=post.pk, statement="A news photo.")

    appeal_decide(appeal=appeal, reviewer=UserFactory(username="bob", is_staff=True), decision="overturn")
    after, _ = export("--since", "2000-01-01")

    assert Post.objects.get(pk=post.pk).state == "restored"
    assert after == before and StatementExport.objects.count() == 1


def test_a_puid_is_stored_once_whatever_records_it(client_user):  # type: ignore[no-untyped-def]
    post = removed(client_user, 1)[0]

    assert statement_exports_record() == 1
    assert statement_exports_record() == 0
    StatementExport.objects.filter(puid__startswith=str(post.pk)).update(analysis=None)  # as if the link were lost
    assert statement_exports_record() == 0  # the analysis is met again; its PUID is already stored
    assert StatementExport.objects.count() == 1


def test_review_decisions_wait_for_the_undo_window_and_undone_ones_never_count(client_user):  # type: ignore[no-untyped-def]
    reviewer = UserFactory(username="alice", is_staff=True)
    post = PostFactory(client=client_user)
    token, _ = post_claim_batch(limit=1, worker="gpu0")
    analysis_record_batch(token=token, policy=policy_active(), worker="gpu0", results=[EngineAnalysis(
        key=str(post.pk), scores={"hate": 0.6}, image_embedding=None, text_embedding=None,
        model_version="clip:test", timings_ms={})])
    fresh = review_decide(post=post, reviewer=reviewer, verdict="violating", category="hate", reason="A slur.")

    assert statement_exports_record() == 0  # the reviewer may still take it back
    review_undo(reviewer=reviewer)
    aged(fresh)
    assert statement_exports_record() == 0  # taken back: it never restricted anything for good


def test_retention_purges_the_stored_statement_texts(client_user):  # type: ignore[no-untyped-def]
    post = removed(client_user, 1)[0]
    statement_exports_record()
    Post.objects.filter(pk=post.pk).update(created_at=timezone.now() - timedelta(days=40))

    post_content_purge(days=30)

    statement = StatementExport.objects.get().statement
    assert statement["decision_facts"] == statement["incompatible_content_explanation"] == "(deleted with the content)"
    assert statement["puid"] == f"{post.pk}-analysis-{post.current_analysis_id}"
