"""The demo's embedded broker (no CELERY_BROKER_URL) under sustained load, with a real worker.

Several writers at once — this process's threads, a second publishing process, the worker's own
wake-ups and webhook tasks — while posts are submitted, analysed and decided. kombu's
file-system transport, the earlier default, let the worker read a half-written message file and
die with ``JSONDecodeError``; every message must arrive, once, and the worker must live on.
"""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from celery import current_app
from django.test import override_settings

from moderation.conf import moderation_settings
from moderation.dispatch import task_publisher_flush
from moderation.models import Post, PostState, WebhookDelivery
from moderation.services.posts import post_submit
from moderation.services.reviews import review_decide
from moderation.services.webhooks import webhook_endpoint_set
from tests.conftest import ROOT
from tests.factories import UserFactory
from tests.workers.conftest import celery_publisher_reset, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
POSTS = 60
DIRECT_SENDS = 4 * 100  # from this process: 4 threads x 100 tasks
OTHER_PROCESSES, OTHER_PROCESS_SENDS = 4, 150
SUCCEEDED = re.compile(r"Task (moderation\.\w+)\[([0-9a-f-]{36})\] succeeded")
# Other processes publishing like busy web processes: its sending thread competes for the GIL
# with another thread, so it is often paused mid-send (this is what exposed the file transport).
PUBLISHER = """
import sys, threading, django
django.setup()
from celery import current_app
import demo  # noqa: F401  (the site's Celery app)

def busy():
    n = 0
    while True:
        n = (n + 1) % 1000003

threading.Thread(target=busy, daemon=True).start()
ids = []
for i in range(int(sys.argv[1])):
    name, queue = ("moderation.analyze_pending", "gpu") if i % 2 else ("moderation.deliver_webhooks", "default")
    ids.append(current_app.send_task(name, queue=queue).id)
print("\\n".join(ids))
"""


def _settings_default_broker(env: dict[str, str]) -> tuple[str, str]:
    """CELERY_BROKER_URL and CELERY_BROKER_TRANSPORT of the demo settings when nothing is set."""
    probe = ("import django; django.setup(); from django.conf import settings as s; "
             "print(s.CELERY_BROKER_URL); print(getattr(s, 'CELERY_BROKER_TRANSPORT', ''))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split("\n")
    return out[0], out[1]


def _publish_to(url: str | None, transport: str | None) -> None:
    """Point this process's Celery app at another broker (see test_chaos._publish_to)."""
    task_publisher_flush()
    current_app.conf.broker_url = current_app.conf.broker_write_url = current_app.conf.broker_read_url = url
    current_app.conf.broker_transport = transport
    celery_publisher_reset()


@pytest.fixture
def embedded(worker_env, tmp_path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The worker's environment with the demo's default broker, and this process publishing to it."""
    env = {k: v for k, v in worker_env.items() if k != "CELERY_BROKER_URL"}
    env["MODERATION_VAR_DIR"] = str(tmp_path / "var")
    url, transport = _settings_default_broker(env)
    assert url == f"sqlite:///{tmp_path / 'var' / 'broker.sqlite3'}"
    assert transport == "demo.broker:Transport"
    saved = current_app.conf.broker_url, current_app.conf.broker_transport
    _publish_to(url, transport)
    yield env
    _publish_to(*saved)


def test_embedded_broker_carries_every_message_under_load(embedded, start_worker, tmp_path):  # type: ignore[no-untyped-def]
    from tests.moderation.test_webhooks import Receiver

    receiver = Receiver()
    client, reviewer = UserFactory(username="busy-site"), UserFactory(username="busy-reviewer")
    fast = {**moderation_settings._load(), "WEBHOOK_ALLOW_PRIVATE": True, "WAKEUP_INTERVAL": 0}
    settings_json = json.dumps({"WEBHOOK_ALLOW_PRIVATE": True, "REVIEW_SAMPLE_RATE": 1.0})
    # CELERY_BROKER_URL empty: the settings' default broker, in this test's own var/.
    worker = start_worker("busy@localhost", CELERY_BROKER_URL="", MODERATION_VAR_DIR=embedded["MODERATION_VAR_DIR"],
                          MODERATION_BATCH_SIZE="4", MODERATION_SETTINGS_JSON=settings_json)
    with override_settings(MODERATION=fast):
        webhook_endpoint_set(client=client, url=receiver.url)
        sent_ids = _load_run(client=client, reviewer=reviewer, env=embedded)
        assert task_publisher_flush(timeout=60)

    assert len(sent_ids) == DIRECT_SENDS + OTHER_PROCESSES * OTHER_PROCESS_SENDS >= 1000
    wait_until(lambda: _succeeded(worker.log()) >= set(sent_ids), timeout=600, interval=1,
               message=f"every task run; log:\n{worker.log()[-3000:]}")
    wait_until(lambda: Post.objects.exclude(state__in=[PostState.REVIEWED, PostState.REMOVED]).count() == 0,
               timeout=300, interval=1, message="every post decided")
    deliveries = WebhookDelivery.objects.count()
    wait_until(lambda: WebhookDelivery.objects.filter(state="delivered").count() == deliveries, timeout=300,
               interval=1, message="every webhook delivered")
    log = worker.log()
    assert worker.proc is not None and worker.proc.poll() is None, log[-3000:]
    assert "Traceback" not in log and "JSONDecodeError" not in log, log[-3000:]
    # Each message ran exactly once, and none is left waiting in the broker.
    runs = Counter(task_id for _, task_id in SUCCEEDED.findall(log))
    assert all(runs[task_id] == 1 for task_id in sent_ids)
    # The last wake-ups (sent as the final posts were decided) drain too.
    wait_until(lambda: _waiting(tmp_path / "var" / "broker.sqlite3") == 0, timeout=120, interval=0.5,
               message="an empty broker")
    assert worker.proc.poll() is None and "Traceback" not in worker.log()
    assert deliveries >= POSTS  # one verdict and one review decision per reviewed post
    assert len(receiver.requests) == deliveries
    receiver.server.shutdown()


def _load_run(*, client, reviewer, env: dict[str, str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Submit and decide posts while four threads and four other processes publish tasks directly."""
    sent: list[str] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        ids = []
        for i in range(count):
            name, queue = (("moderation.analyze_pending", "gpu") if i % 2
                           else ("moderation.deliver_webhooks", "default"))
            ids.append(current_app.send_task(name, queue=queue).id)
        with lock:
            sent.extend(ids)

    others = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(OTHER_PROCESS_SENDS)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, text=True) for _ in range(OTHER_PROCESSES)]
    threads = [threading.Thread(target=send, args=(DIRECT_SENDS // 4,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    _submit_and_decide(client=client, reviewer=reviewer)
    for thread in threads:
        thread.join(timeout=600)
    for other in others:
        out, _ = other.communicate(timeout=600)
        assert other.returncode == 0
        sent.extend(out.split())
    return sent


def _submit_and_decide(*, client, reviewer) -> None:  # type: ignore[no-untyped-def]
    """Each post is submitted alone (one wake-up each) and decided as soon as it is in review."""
    for i in range(POSTS):
        post_submit(client=client, text=f"busy post {i}")
        for post in Post.objects.filter(state=PostState.NEEDS_REVIEW):
            review_decide(post=post, reviewer=reviewer, verdict="not_violating")
    wait_until(lambda: _decide_ready(reviewer) == 0, timeout=600, interval=0.2, message="posts left to decide")


def _decide_ready(reviewer) -> int:  # type: ignore[no-untyped-def]
    for post in Post.objects.filter(state=PostState.NEEDS_REVIEW):
        review_decide(post=post, reviewer=reviewer, verdict="not_violating")
    return Post.objects.exclude(state__in=[PostState.REVIEWED, PostState.REMOVED]).count()


def _succeeded(log: str) -> set[str]:
    return {task_id for _, task_id in SUCCEEDED.findall(log)}


def _waiting(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM kombu_message WHERE visible").fetchone()[0]
