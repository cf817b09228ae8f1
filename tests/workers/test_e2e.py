"""End to end: HTTP API → broker → a real Celery worker process → verdict in the database."""
from __future__ import annotations

import io
import signal

import pytest
import requests
from PIL import Image

from moderation.models import Analysis, Post, PostEvent, PostState
from moderation.services.posts import post_submit
from tests.factories import UserFactory
from tests.workers.conftest import wait_until

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
    assert PostEvent.objects.filter(post=post, from_state="analyzing", actor=worker.name).count() == 1


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
