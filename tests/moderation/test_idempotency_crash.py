"""A gunicorn worker killed mid-request with an Idempotency-Key: the retry gets the one post.

A real gunicorn serves the demo site against the test database. The crash drill hook
(``MODERATION_CRASH_DRILL_DIR``) pauses the request whose key is ``crash-drill:<step>`` at
that step; the test then kills the worker process with SIGKILL, as an OOM killer or a
``kill -9`` would, and retries with the same key.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from django.db import connection

from moderation.models import IdempotencyRecord, Post, PostEvent
from moderation.services.apikeys import apikey_create
from tests.conftest import ROOT
from tests.factories import UserFactory
from tests.workers.conftest import database_url, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
STEPS = ("reserved", "inserted", "completed")


class Gunicorn:
    """The demo site under gunicorn (two threaded workers), logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "demo/gunicorn.conf.py", "--workers", "2",
                 "--bind", f"127.0.0.1:{self.port}", "demo.wsgi:application"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._serves, timeout=120, interval=0.2, message=f"gunicorn to serve; log:\n{self.log()}")

    def _serves(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture
def drill_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "drill"
    directory.mkdir()
    return directory


@pytest.fixture
def gunicorn(transactional_db, drill_dir, tmp_path) -> Iterator[Gunicorn]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.test", "DATABASE_URL": database_url(),
           "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "filesystem://"),
           "MODERATION_VAR_DIR": str(tmp_path / "var"), "MODERATION_CRASH_DRILL_DIR": str(drill_dir),
           "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4", "PYTHONUNBUFFERED": "1"}
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    yield server
    server.stop()


def _submit(port: int, *, api_key: str, key: str, text: str, timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/posts/", data=json.dumps({"text": text}).encode(), method="POST",
        headers={"Authorization": f"Api-Key {api_key}", "Idempotency-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def _submit_until_answered(port: int, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    """Retry through connection errors while gunicorn replaces the killed worker."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return _submit(port, **kwargs)
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer after the crash: {exc}")
            time.sleep(0.5)


@pytest.mark.parametrize("step", STEPS)
def test_worker_killed_mid_request_then_retry_gets_the_one_post(gunicorn, drill_dir, step):  # type: ignore[no-untyped-def]
    _, api_key = apikey_create(user=UserFactory(username=f"crash-{step}"))
    key, text = f"crash-drill:{step}", f"killed at {step}"
    first: list[object] = []
    thread = threading.Thread(target=lambda: first.append(_outcome(gunicorn.port, api_key=api_key, key=key, text=text)))
    thread.start()
    marker = drill_dir / step
    wait_until(marker.exists, timeout=120, interval=0.05, message=f"the request to pause at {step}")
    wait_until(lambda: marker.read_text() != "", timeout=10, message="the paused worker's pid")
    during = _during(gunicorn.port, api_key=api_key, key=key, text=text, step=step)

    os.kill(int(marker.read_text()), signal.SIGKILL)
    thread.join(60)
    status, headers, body = _submit_until_answered(gunicorn.port, api_key=api_key, key=key, text=text)

    assert isinstance(first[0], Exception), f"the killed request was answered: {first[0]}"
    post = Post.objects.get(text=text)
    assert Post.objects.filter(client=post.client).count() == 1
    assert (status, body["id"], headers.get("Idempotent-Replayed")) == (
        202, str(post.pk), "true" if step == "completed" else None)
    assert list(PostEvent.objects.filter(post=post).values_list("to_state", flat=True)) == ["queued"]
    record = IdempotencyRecord.objects.get(key=key)
    assert (record.response_status, record.response_body["id"]) == (202, str(post.pk))
    if during is not None:
        assert during == ((202, str(post.pk)) if step == "completed" else (409, "idempotency_in_progress"))


def _outcome(port: int, **kwargs: Any) -> object:
    try:
        return _submit(port, **kwargs)[0]
    except (urllib.error.URLError, ConnectionError) as exc:  # the worker died under the request
        return exc


def _during(port: int, *, step: str, **kwargs: Any) -> tuple[int, str] | None:
    """A retry while the first request is alive and paused; on SQLite it would wait for it."""
    if connection.vendor != "postgresql" and step != "completed":
        return None
    status, _, body = _submit(port, **kwargs)
    return status, body["id"] if status == 202 else body["code"]
