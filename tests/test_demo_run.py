"""``make run``'s program from an empty var/ directory: migrate, credentials, worker, web, verdict."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, *, timeout: float, **kwargs: object) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


def test_demo_run_serves_api_and_worker_writes_verdict(tmp_path, tiny_dir):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    # The default "small" profile on an offline machine with an empty model cache: the tiny fallback.
    env.update({"MODERATION_VAR_DIR": str(tmp_path / "var"), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "MODERATION_TINY_DIR": str(tiny_dir), "MODERATION_PROFILE": "small", "PORT": str(port),
                "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "demo.settings.dev"})
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "demo.run"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", timeout=120)
        password, key = (tmp_path / "var" / "demo-credentials.txt").read_text().split("\n")[:2]
        headers = {"Authorization": f"Api-Key {key}"}
        submitted = requests.post(f"{base}/api/v1/posts/", json={"text": "hello world"}, headers=headers, timeout=30)
        assert submitted.status_code == 202, submitted.text
        deadline = time.monotonic() + 120
        status = "queued"
        while status in {"queued", "analyzing"} and time.monotonic() < deadline:
            time.sleep(0.5)
            status = requests.get(submitted.json()["url"], headers=headers, timeout=10).json()["status"]
        assert status in {"allowed", "needs_review", "removed"}
        assert wait_for(f"{base}/readyz", timeout=10).json()["checks"] == {"database": True, "broker": True}
        banner = (tmp_path / "run.log").read_text(errors="replace")
        assert f"{base}/api/v1/docs/" in banner and key in banner and password in banner
        assert "NOTICE: the 'small' models could not be loaded" in banner
        assert "scores from the tiny embedder are noise" in banner
        assert "Roles with a real checkpoint: reader, text. Random weights, output withheld" in banner
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
