"""End to end: a post submitted over HTTP, removed by a real worker, its statement of reasons submitted by
that worker's task to a local stand-in of the DSA Transparency Database."""
from __future__ import annotations

import json

import pytest
import requests

from moderation.dispatch import task_publisher_flush, task_send_on_commit
from moderation.models import Category, Post, StatementExport
from moderation.services.apikeys import apikey_create
from moderation.services.policies import policy_active
from tests.factories import UserFactory
from tests.moderation.test_statement_exports import TOKEN, FakeTransparencyDatabase
from tests.workers.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_worker_submits_the_statement_of_a_removal(live_server, start_worker):  # type: ignore[no-untyped-def]
    database = FakeTransparencyDatabase()
    Category.objects.filter(policy=policy_active()).update(remove_threshold=0.0)  # every verdict removes
    _, key = apikey_create(user=UserFactory(username="e2e"))
    worker = start_worker(MODERATION_SETTINGS_JSON=json.dumps(
        {"TRANSPARENCY_DB_URL": database.url, "TRANSPARENCY_DB_TOKEN": TOKEN}))
    try:
        response = requests.post(f"{live_server.url}/api/v1/posts/", headers={"Authorization": f"Api-Key {key}"},
                                 data={"text": "a post the policy removes"}, timeout=30)
        post_id = response.json()["id"]
        wait_until(lambda: Post.objects.get(pk=post_id).state == "removed", timeout=180, interval=0.25,
                   message=f"a removal; worker log:\n{worker.log()[-3000:]}")

        task_send_on_commit("moderation.submit_statements", queue="default")  # what beat sends
        assert task_publisher_flush()
        wait_until(lambda: StatementExport.objects.filter(state="submitted").exists(), timeout=60, interval=0.25,
                   message=f"a submitted statement; worker log:\n{worker.log()[-3000:]}")
    finally:
        database.server.shutdown()

    post = Post.objects.get(pk=post_id)
    export = StatementExport.objects.get()
    assert export.puid == f"{post.pk}-analysis-{post.current_analysis_id}"
    assert database.stored == {export.puid: export.database_uuid}
    assert [r["headers"]["authorization"] for r in database.requests] == [f"Bearer {TOKEN}"]
    assert database.problems == [] and TOKEN not in worker.log()
