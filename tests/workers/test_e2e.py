"""End to end: HTTP API → broker → a real Celery worker process → verdict in the database."""
from __future__ import annotations

import io
import signal

import pytest
import requests
from django.db import connection
from PIL import Image

from moderation.models import Analysis, Post, PostEvent, PostState
from moderation.services.posts import post_submit
from tests.conftest import require_service
from tests.factories import UserFactory
from tests.workers.conftest import database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED}


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_submit_over_http_and_worker_writes_verdict(live_server, start_worker):  # type: ignore[no-untyped-def]
    from moderation.services.apikeys import apikey_create

    _, key = apikey_create(user=UserFactory(username="e2e"))
    headers = {"Authorization": f"Api-Key {key}"}
    worker = start_worker()

    response = requests.post(f"{live_server.url}/api/v1/posts/", headers=headers, timeout=30,
                             files={"image": ("meme.png", png((10, 200, 30)), "image/png")},
                             data={"text": "a harmless meme"})
    assert response.status_code == 202, response.text
    detail_url = response.json()["url"]
    assert response.json()["status"] == "queued"

    def final() -> bool:
        return requests.get(detail_url, headers=headers, timeout=30).json()["status"] in FINAL

    wait_until(final, timeout=180, interval=0.25, message=f"a verdict; worker log:\n{worker.log()[-3000:]}")
    body = requests.get(detail_url, headers=headers, timeout=30).json()
    analysis = body["analysis"]
    assert set(analysis["scores"]) == {"hate", "harassment", "extremism", "violence", "sexual"}
    assert all(0.0 <= v <= 1.0 for v in analysis["scores"].values())
    assert analysis["decision"] in {"allow", "review", "remove"}
    assert analysis["model_version"].startswith("clip:")
    assert analysis["policy_version"] == 1
    post = Post.objects.get(pk=body["id"])
    assert post.current_analysis.image_embedding is not None
    assert PostEvent.objects.filter(post=post, from_state="analyzing", actor=f"worker:{worker.name}").count() == 1


def test_worker_killed_mid_batch_loses_no_post(start_worker):  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = UserFactory(username="chaos")
    posts = [post_submit(client=client, text=f"post {i}",
                         image=SimpleUploadedFile("p.png", png((i * 8, 50, 90)), "image/png"))[0]
             for i in range(24)]
    name = "chaos-gpu0@localhost"
    worker = start_worker(name, MODERATION_BATCH_SIZE="4")

    wait_until(lambda: Post.objects.filter(state=PostState.ANALYZING).exists(), timeout=120, interval=0.005,
               message="a claimed batch")
    worker.kill(signal.SIGKILL)
    in_flight = Post.objects.filter(state=PostState.ANALYZING, claimed_by=name).count()
    assert in_flight > 0

    restarted = start_worker(name, MODERATION_BATCH_SIZE="4")
    wait_until(lambda: Post.objects.filter(state__in=FINAL).count() == len(posts), timeout=180, interval=0.25,
               message=f"every post final; log:\n{restarted.log()[-3000:]}")
    for post in posts:
        assert Analysis.objects.filter(post=post).count() == 1
        assert PostEvent.objects.filter(post=post, from_state=PostState.ANALYZING,
                                        to_state__in=FINAL).count() == 1


def test_ad_hoc_requests_and_search_through_the_real_worker(live_server, start_worker):  # type: ignore[no-untyped-def]
    from moderation.services.apikeys import apikey_create

    _, key = apikey_create(user=UserFactory(username="asker"))
    headers = {"Authorization": f"Api-Key {key}"}
    api = f"{live_server.url}/api/v1"
    worker = start_worker()
    submitted = requests.post(f"{api}/posts/", headers=headers, timeout=30,
                              files={"image": ("m.png", png((200, 40, 40)), "image/png")}, data={"text": "a meme"})
    post_url = submitted.json()["url"]
    wait_until(lambda: requests.get(post_url, headers=headers, timeout=30).json()["status"] in FINAL, timeout=180,
               interval=0.25, message=f"a verdict; log:\n{worker.log()[-3000:]}")

    asks = {
        "questions": {"question": "Is there a weapon?"},
        "groundings": {"phrases": ["young person", "bat"]},
        "captions": {"prompt": "a protest"},
    }
    urls = {kind: requests.post(f"{post_url}{kind}/", json=body, headers=headers, timeout=30).json()["url"]
            for kind, body in asks.items()}

    def done(url: str) -> bool:
        return requests.get(url, headers=headers, timeout=30).json()["status"] in {"done", "failed"}

    for kind, url in urls.items():
        wait_until(lambda url=url: done(url), timeout=120, interval=0.25,
                   message=f"{kind} answered; log:\n{worker.log()[-3000:]}")
    results = {kind: requests.get(url, headers=headers, timeout=30).json() for kind, url in urls.items()}
    assert {k: r["status"] for k, r in results.items()} == dict.fromkeys(asks, "done")
    # The worker runs the tiny random-weight roles: their output is withheld, not shown as an answer.
    assert {k: r["result"] for k, r in results.items()} == {
        "questions": {"answer": None, "unavailable": "unavailable: no checkpoint for generator"},
        "groundings": {"groundings": [], "unavailable": "unavailable: no checkpoint for grounder"},
        "captions": {"caption": None, "unavailable": "unavailable: no checkpoint for generator"}}
    assert "+owlv2:" in results["groundings"]["model_version"]
    detail = requests.get(post_url, headers=headers, timeout=30).json()
    assert sorted(r["kind"] for r in detail["requests"]) == ["caption", "grounding", "question"]

    search = requests.get(f"{api}/search/", params={"q": "a red meme", "k": 5}, headers=headers, timeout=60)
    assert search.status_code == 200, search.text
    assert [hit["id"] for hit in search.json()["results"]] == [detail["id"]]


def test_worker_keeps_its_database_connection_between_wakeups(start_worker):  # type: ignore[no-untyped-def]
    """Each wake-up is a task; opening a PostgreSQL backend per task would cost more than the task."""
    if connection.vendor != "postgresql":
        require_service("counting server backends needs PostgreSQL (set DATABASE_URL)")
    from django.core.files.uploadedfile import SimpleUploadedFile

    def worker_backends() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])
            return {pid for (pid,) in cursor.fetchall()}

    client = UserFactory(username="reuse")
    name = "connection-reuse-worker"  # the worker's connections say so, and only its own
    start_worker(MODERATION_TEST_CONN_MAX_AGE="600", DATABASE_URL=f"{database_url()}?application_name={name}")
    seen = []
    for i in range(3):
        post, _ = post_submit(client=client, text=f"post {i}",
                              image=SimpleUploadedFile("p.png", png((i * 40, 9, 9)), "image/png"))
        wait_until(lambda: Post.objects.get(pk=post.pk).state in FINAL, timeout=120, interval=0.1,
                   message="a verdict")
        wait_until(lambda: bool(worker_backends()), timeout=5, message="the worker's connection")
        seen.append(worker_backends())
    assert seen[0] == seen[1] == seen[2] and len(seen[0]) == 1, seen


def test_sigterm_during_a_full_batch_charges_nothing_to_the_posts_claimed_ahead(start_worker):  # type: ignore[no-untyped-def]
    client = UserFactory(username="shutdown")
    posts = [post_submit(client=client, text=f"post {i}")[0] for i in range(200)]
    worker = start_worker("shutdown-gpu0@localhost", MODERATION_BATCH_SIZE="4")

    def batch_running_with_one_claimed_ahead() -> bool:
        tokens = set(Post.objects.filter(state=PostState.ANALYZING).values_list("claim_token", flat=True))
        return len(tokens) == 2 and Post.objects.filter(state__in=FINAL).exists()

    wait_until(batch_running_with_one_claimed_ahead, timeout=180, interval=0.005,
               message=f"a batch running with one claimed ahead; log:\n{worker.log()[-3000:]}")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=120) == 0, worker.log()[-3000:]

    states = {(p.state in FINAL, p.state, p.attempts) for p in Post.objects.filter(pk__in=[p.pk for p in posts])}
    # The worker stopped after the batch in hand instead of draining the queue; what it had
    # claimed ahead went back to the queue with no attempt counted, and nothing stayed claimed.
    assert states == {(True, s, 1) for _, s, _ in states if _} | {(False, PostState.QUEUED, 0)}, worker.log()[-4000:]
    assert Post.objects.filter(state__in=FINAL).count() < len(posts)
    returned = PostEvent.objects.filter(detail__reason="returned unprocessed")
    assert returned.count() == 4
    assert set(Post.objects.filter(pk__in=returned.values("post_id")).values_list("attempts", flat=True)) == {0}


def test_an_idle_worker_keeps_beating(start_worker):  # type: ignore[no-untyped-def]
    import json

    from moderation.models import WorkerHeartbeat

    worker = start_worker("idle@localhost", MODERATION_SETTINGS_JSON=json.dumps({"WORKER_HEARTBEAT_INTERVAL": 1}))
    wait_until(lambda: WorkerHeartbeat.objects.filter(name="idle@localhost").exists(), timeout=120, interval=0.25,
               message=f"a first heartbeat; log:\n{worker.log()[-3000:]}")
    first = WorkerHeartbeat.objects.get(name="idle@localhost")

    wait_until(lambda: WorkerHeartbeat.objects.get(pk=first.pk).last_seen_at > first.last_seen_at, timeout=30,
               interval=0.25, message="a later heartbeat with no task run")
    beat = WorkerHeartbeat.objects.get(pk=first.pk)
    assert (beat.queues, beat.pid, beat.started_at) == (",default,gpu,", worker.proc.pid, first.started_at)
