"""``make run``'s program from an empty var/ directory: migrate, credentials, worker, web, verdict,
the banner's own example, and a worker that crashes under it."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
FINAL = {"allowed", "needs_review", "removed"}


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


@dataclass
class Demo:
    base: str
    var: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def key(self) -> str:
        return (self.var / "demo-credentials.txt").read_text().split("\n")[1]

    def verdict(self, url: str, *, timeout: float = 180) -> str:
        headers = {"Authorization": f"Api-Key {self.key()}"}
        deadline, status = time.monotonic() + timeout, "queued"
        while status not in FINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            status = requests.get(url, headers=headers, timeout=10).json()["status"]
        return status


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[Demo]:
    tmp_path = tmp_path_factory.mktemp("demo-run")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    # The default "small" profile on an offline machine with an empty model cache: the tiny fallback.
    env.update({"MODERATION_VAR_DIR": str(tmp_path / "var"), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "MODERATION_TINY_DIR": str(tiny_dir), "MODERATION_PROFILE": "small", "PORT": str(port),
                "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "demo.settings.dev"})
    demo = Demo(base=f"http://127.0.0.1:{port}", var=tmp_path / "var", log_path=tmp_path / "run.log")
    log = demo.log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "demo.run"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"{demo.base}/healthz", timeout=180)
        deadline = time.monotonic() + 120
        while "Ctrl-C stops" not in demo.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        yield demo
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_demo_run_serves_api_and_worker_writes_verdict(demo: Demo) -> None:
    password, key = (demo.var / "demo-credentials.txt").read_text().split("\n")[:2]
    headers = {"Authorization": f"Api-Key {key}"}
    submitted = requests.post(f"{demo.base}/api/v1/posts/", json={"text": "hello world"}, headers=headers, timeout=30)
    assert submitted.status_code == 202, submitted.text
    assert demo.verdict(submitted.json()["url"]) in FINAL
    assert wait_for(f"{demo.base}/readyz", timeout=10).json()["checks"] == {"database": True, "broker": True}
    log = demo.log()
    assert f"   API key     {key}\n" in log
    assert f"(user: admin, password: {password})" in log and f"{demo.base}/api/v1/docs/" in log
    assert "NOTICE: the 'small' models could not be loaded" in log
    assert "scores from the tiny embedder are noise" in log
    assert "Roles with a real checkpoint: reader, text. Random weights, output withheld" in log


def test_terminal_shows_no_stray_output(demo: Demo) -> None:
    log = demo.log()
    for noise in ("objects imported", "Writing model shards", "it is shown only once", "Applying moderation",
                  "Scheduler: Sending due task"):
        assert noise not in log, noise


def test_banner_example_command_works_as_printed(demo: Demo) -> None:
    command = re.search(r"^ Try \(from the repository root\):\n   (curl .*)$", demo.log(), re.MULTILINE)
    assert command is not None, demo.log()[-3000:]

    result = subprocess.run(command.group(1), shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "queued"
    assert demo.verdict(body["url"]) in FINAL
    assert (demo.var / "sample.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_crashed_worker_is_restarted_and_the_web_server_stays_up(demo: Demo) -> None:
    pids = [int(p) for p in re.findall(r"^demo\.run: worker started \(pid (\d+)\)$", demo.log(), re.MULTILINE)]
    assert pids, demo.log()[-3000:]
    crashed = pids[-1]

    os.kill(crashed, signal.SIGKILL)

    deadline = time.monotonic() + 120
    pattern = re.compile(r"^demo\.run: worker started \(pid (\d+)\)$", re.MULTILINE)
    while len(pattern.findall(demo.log())) == len(pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    log = demo.log()
    told = re.search(rf"^demo\.run: the worker \(pid {crashed}\) was killed by SIGKILL after \d+s; "
                     r"restarting it in \d+s \(the web server keeps running;", log, re.MULTILINE)
    assert told is not None, log[-3000:]
    restarted = int(pattern.findall(log)[-1])
    assert restarted != crashed
    os.kill(restarted, 0)  # alive
    wait_for(f"{demo.base}/healthz", timeout=10)
    headers = {"Authorization": f"Api-Key {demo.key()}"}
    submitted = requests.post(f"{demo.base}/api/v1/posts/", json={"text": "after the crash"}, headers=headers,
                              timeout=30)
    assert submitted.status_code == 202, submitted.text
    assert demo.verdict(submitted.json()["url"]) in FINAL
