"""Real worker processes for end-to-end tests: Celery against the test database and broker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from django.db import connection

from tests.conftest import ROOT, require_service


def database_url() -> str:
    """The URL of the database the tests are using (the test database, not the configured one)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def broker_reachable(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 — any failure means "not reachable" for a skip decision
        return False


class WorkerProcess:
    """``celery worker`` in a subprocess (solo pool, like a GPU worker), logging to a file."""

    def __init__(self, env: dict[str, str], name: str, log_path: Path) -> None:
        self.env, self.name, self.log_path = env, name, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "gpu,default", "-P", "solo",
               "-c", "1", "-n", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-l", "info"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def worker_env(transactional_db, settings, tiny_dir, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    # Without CELERY_BROKER_URL the workers use the settings' default, the embedded broker in
    # var/, as this process does.
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis") and not broker_reachable(broker):
        require_service(f"Redis at {broker} is not reachable")
    settings.MEDIA_ROOT = tmp_path / "media"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.test", "DATABASE_URL": database_url(),
           "MODERATION_MEDIA_ROOT": str(settings.MEDIA_ROOT), "MODERATION_TINY_DIR": str(tiny_dir),
           "PYTHONUNBUFFERED": "1"}
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:  # type: ignore[no-untyped-def]
    started: list[WorkerProcess] = []

    def start(name: str | None = None, **extra_env: str) -> WorkerProcess:
        name = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
        worker = WorkerProcess({**worker_env, **extra_env}, name, tmp_path / f"{name}.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill(signal.SIGTERM)


def thresholds(review: float, remove: float) -> None:
    """Publish a policy version with every category at these thresholds (the workers read it per batch)."""
    from moderation.services.policies import CATEGORY_FIELDS, policy_active, policy_publish

    current = policy_active()
    categories = [{**{f: getattr(c, f) for f in CATEGORY_FIELDS}, "review_threshold": review,
                   "remove_threshold": remove} for c in current.categories.order_by("position")]
    policy_publish(categories=categories, benign_prompts=current.benign_prompts, note=f"{review}/{remove}")


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05,
               message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def celery_publisher_reset() -> None:
    """Drop this process's broker connections and producer pools after its broker settings changed.

    kombu keeps producer pools in a process-wide registry as well; a pool left there would hand
    later sends the closed connections ("Acquire on closed pool").
    """
    from celery import current_app
    from kombu import pools as kombu_pools

    if current_app._pool is not None:
        current_app._pool.force_close_all()
        current_app._pool = None
    current_app.amqp._producer_pool = None
    kombu_pools.reset()


@pytest.fixture(scope="module")
def engine(tiny_dir):  # type: ignore[no-untyped-def]
    """The tiny engine with every role, loaded once per module."""
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine

    return Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir)))


@pytest.fixture(scope="module")
def scoring_engine(tiny_dir):  # type: ignore[no-untyped-def]
    """The tiny engine without grounder, generator and verifier: scores and embeddings only."""
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine

    return Engine.from_config(EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="",
                                                       verifier=""))
