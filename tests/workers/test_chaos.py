"""Faults with real processes: a private Redis stopped and restarted, workers killed or stopped."""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator

import pytest
from celery import current_app
from django.test import Client, override_settings
from django.utils import timezone

from moderation.dispatch import task_publisher_flush
from moderation.models import Analysis, Post, PostEvent, PostState, WebhookDelivery, WorkerHeartbeat
from moderation.services.apikeys import apikey_create
from moderation.services.posts import post_submit
from moderation.services.webhooks import webhook_endpoint_set
from tests.conftest import ROOT, require_service
from tests.factories import UserFactory
from tests.workers.conftest import WorkerProcess, celery_publisher_reset, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FINAL = {PostState.ALLOWED, PostState.NEEDS_REVIEW, PostState.REMOVED}
FAST_RECOVERY = json.dumps({"QUEUED_STALE_AFTER": 1, "CLAIM_TIMEOUT": 20, "WEBHOOK_ALLOW_PRIVATE": True})


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, so stopping it harms nothing else."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_until(self._answers, timeout=20, message="redis-server to answer")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def messages(self, queue: str) -> list[dict]:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "LRANGE", queue, "0", "-1"],
                             capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _publish_to(url: str | None, transport: str | None) -> None:
    """Point this process's Celery app (which the app's dispatch uses) at ``url``.

    ``broker_write_url`` is what publishing reads, and it wins over ``broker_url`` once read.
    The transport goes with it: without a broker URL the demo settings name the embedded
    broker's transport, which would read a redis:// URL as a database.
    """
    task_publisher_flush()  # no wake-up in flight while the pools change
    current_app.conf.broker_write_url = url
    current_app.conf.broker_transport = transport
    celery_publisher_reset()


@pytest.fixture
def redis_server(worker_env) -> Iterator[PrivateRedis]:  # type: ignore[no-untyped-def]
    if shutil.which("redis-server") is None:
        require_service("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    transport = current_app.conf.broker_transport
    _publish_to(server.url, None)
    yield server
    _publish_to(None, transport)
    server.stop()


@pytest.fixture
def chaos_worker(start_worker, redis_server):  # type: ignore[no-untyped-def]
    def start(name: str = "chaos0@localhost", **env: str):  # type: ignore[no-untyped-def]
        return start_worker(name, CELERY_BROKER_URL=redis_server.url, MODERATION_SETTINGS_JSON=FAST_RECOVERY,
                            MODERATION_SWEEP_INTERVAL="1", MODERATION_WEBHOOK_INTERVAL="1", **env)
    return start


def test_tasks_carry_no_post_data(redis_server, worker_env):  # type: ignore[no-untyped-def]
    client = UserFactory(username="privacy")
    post, _ = post_submit(client=client, text="my phone number is 555-0100", external_id="ext-secret")
    assert task_publisher_flush()

    messages = redis_server.messages("gpu")

    assert len(messages) == 1
    raw = json.dumps(messages)
    assert "555-0100" not in raw and "ext-secret" not in raw and str(post.pk) not in raw
    headers = messages[0]["headers"]
    assert headers["task"] == "moderation.analyze_pending"
    assert headers["argsrepr"] == "()" and headers["kwargsrepr"] == "{}"


def test_redis_down_at_submit_then_analysed_when_back(redis_server, chaos_worker):  # type: ignore[no-untyped-def]
    worker = chaos_worker()
    _, key = apikey_create(user=UserFactory(username="outage"))
    redis_server.stop()
    http = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")

    started = time.monotonic()
    response = http.post("/api/v1/posts/", {"text": "sent while the broker is down"})
    elapsed = time.monotonic() - started

    assert response.status_code == 202 and elapsed < 5
    post = Post.objects.get(pk=response.json()["id"])
    assert post.state == PostState.QUEUED
    redis_server.start()
    wait_until(lambda: Post.objects.get(pk=post.pk).state in FINAL, timeout=120, interval=0.25,
               message=f"analysis after the broker returned; log:\n{worker.log()[-3000:]}")
    assert Analysis.objects.filter(post=post).count() == 1


def test_redis_restart_under_load_and_worker_sigterm(redis_server, chaos_worker, live_server):  # type: ignore[no-untyped-def]
    from tests.moderation.test_webhooks import Receiver

    receiver = Receiver()
    client = UserFactory(username="load")
    with override_settings(MODERATION={"WEBHOOK_ALLOW_PRIVATE": True}):
        webhook_endpoint_set(client=client, url=receiver.url)
    worker = chaos_worker(MODERATION_BATCH_SIZE="4")
    submitted: list[str] = []

    def submit(count: int) -> None:
        for i in range(count):
            submitted.append(str(post_submit(client=client, text=f"load {len(submitted)} {i}")[0].pk))

    submit(15)
    redis_server.stop()
    submit(5)  # accepted while the broker is down
    redis_server.start()
    submit(10)
    worker.kill(signal.SIGTERM)  # warm shutdown: the current batch finishes
    worker = chaos_worker(MODERATION_BATCH_SIZE="4")

    wait_until(lambda: Post.objects.filter(state__in=FINAL).count() == len(submitted), timeout=180,
               interval=0.25, message=f"every post final; log:\n{worker.log()[-3000:]}")
    wait_until(lambda: WebhookDelivery.objects.filter(state="delivered").count() == len(submitted), timeout=120,
               interval=0.25, message="every webhook delivered")
    for post_id in submitted:
        assert Analysis.objects.filter(post_id=post_id).count() == 1
        assert PostEvent.objects.filter(post_id=post_id, to_state__in=FINAL).count() == 1
        assert WebhookDelivery.objects.filter(post_id=post_id).count() == 1
    delivered_ids = [json.loads(body)["post"]["id"] for _, body in receiver.requests]
    assert sorted(delivered_ids) == sorted(submitted)
    receiver.server.shutdown()


def test_rolled_back_transaction_enqueues_nothing(redis_server, worker_env):  # type: ignore[no-untyped-def]
    from django.db import transaction

    client = UserFactory(username="rollback")

    with pytest.raises(RuntimeError), transaction.atomic():
        post_submit(client=client, text="never committed")
        raise RuntimeError("the caller's transaction fails after the submit")

    assert task_publisher_flush()
    assert Post.objects.count() == 0
    assert redis_server.messages("gpu") == []


def test_post_that_kills_its_worker_fails_alone(redis_server, chaos_worker):  # type: ignore[no-untyped-def]
    """The test plays the OOM killer: whenever the poisoned post is being analysed, kill -9."""
    client = UserFactory(username="poison")
    poisoned = post_submit(client=client, text="this one kills the worker")[0]
    others = [post_submit(client=client, text=f"innocent {i}")[0] for i in range(5)]
    name = "poisoned@localhost"
    kills, last_claim = 0, None

    def claimed_anew_or_failed() -> bool:
        post = Post.objects.get(pk=poisoned.pk)
        fresh_claim = post.state == PostState.ANALYZING and post.claim_token != last_claim
        return fresh_claim or post.state == PostState.FAILED

    while Post.objects.get(pk=poisoned.pk).state != PostState.FAILED and kills < 5:
        worker = chaos_worker(name, MODERATION_BATCH_SIZE="4")
        wait_until(claimed_anew_or_failed, timeout=120, interval=0.005,
                   message=f"the poisoned post claimed; log:\n{worker.log()[-2000:]}")
        post = Post.objects.get(pk=poisoned.pk)
        if post.state == PostState.ANALYZING:
            worker.kill(signal.SIGKILL)
            kills, last_claim = kills + 1, post.claim_token
    if worker.proc.poll() is not None:  # the last one was killed: a new one finishes the rest
        worker = chaos_worker(name, MODERATION_BATCH_SIZE="4")
    wait_until(lambda: Post.objects.filter(pk__in=[p.pk for p in others], state__in=FINAL).count() == len(others),
               timeout=180, interval=0.25, message=f"the innocent posts analysed; log:\n{worker.log()[-3000:]}")

    poisoned.refresh_from_db()
    assert (poisoned.state, poisoned.attempts, kills) == (PostState.FAILED, 3, 3)
    assert poisoned.last_error == "worker restarted after 3 attempts"
    assert Analysis.objects.filter(post=poisoned).count() == 0
    for post in others:
        assert Analysis.objects.filter(post=post).count() == 1
        assert Post.objects.get(pk=post.pk).attempts <= 2


class SlowReceiver:
    """A webhook receiver on loopback whose first answer takes ``first_delay`` seconds, so the
    delivery task that sends it is still running (unacknowledged) when the broker goes away."""

    def __init__(self, first_delay: float) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not receiver.bodies:
                    time.sleep(first_delay)
                receiver.bodies.append(body)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Supervisor:
    """What ``restart: unless-stopped`` or systemd's ``Restart=always`` does: start the process
    again whenever it exits."""

    def __init__(self, start: Callable[[], WorkerProcess]) -> None:
        self.start, self.current, self.restarts = start, start(), 0
        self.running = True
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while self.running:
            if self.current.proc is not None and self.current.proc.poll() is not None:
                self.restarts += 1
                self.current = self.start()
            time.sleep(0.5)


def test_broker_restarted_empty_under_an_unacked_webhook_task_deliveries_resume(  # type: ignore[no-untyped-def]
        redis_server, chaos_worker, worker_env, tmp_path):
    receiver = SlowReceiver(first_delay=5.0)
    client = UserFactory(username="hooks")
    with override_settings(MODERATION={"WEBHOOK_ALLOW_PRIVATE": True}):
        webhook_endpoint_set(client=client, url=receiver.url)
    env = {"CELERY_BROKER_URL": redis_server.url, "MODERATION_SETTINGS_JSON": FAST_RECOVERY,
           "MODERATION_SWEEP_INTERVAL": "1", "MODERATION_WEBHOOK_INTERVAL": "1"}
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers", "beat", "-l", "info",
                             "-s", str(tmp_path / "beat-schedule")], cwd=ROOT, env={**worker_env, **env},
                            stdout=(tmp_path / "beat.log").open("ab"), stderr=subprocess.STDOUT)
    supervisor = Supervisor(lambda: chaos_worker("hooks@localhost"))
    try:
        posts = [post_submit(client=client, text=f"hooked {i}")[0] for i in range(6)]
        wait_until(lambda: WebhookDelivery.objects.filter(post__in=posts).count() == len(posts), timeout=180,
                   interval=0.25, message=f"every post final; log:\n{supervisor.current.log()[-3000:]}")
        time.sleep(1.0)  # the first delivery is now being sent, its task unacknowledged
        assert receiver.bodies == []
        redis_server.stop()
        time.sleep(2.0)
        restarted_at = timezone.now()
        redis_server.start()  # empty: the unacknowledged message is gone with the old server

        wait_until(lambda: WebhookDelivery.objects.filter(state="delivered").count() == len(posts), timeout=180,
                   interval=0.25, message=f"deliveries after the restart; log:\n{supervisor.current.log()[-3000:]}")
        assert sorted(json.loads(b)["post"]["id"] for b in receiver.bodies) == sorted(str(p.pk) for p in posts)
        wait_until(lambda: WorkerHeartbeat.objects.filter(name="hooks@localhost",
                                                          last_seen_at__gt=restarted_at).exists(),
                   timeout=60, interval=0.25, message="a heartbeat after the broker came back")
        assert WorkerHeartbeat.objects.get(name="hooks@localhost").queues == ",default,gpu,"
    finally:
        supervisor.running = False
        beat.terminate()
        beat.wait(timeout=30)
        receiver.server.shutdown()
