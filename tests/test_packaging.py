"""The app as a plugin: build the wheel, install it web-only (no torch) into a fresh virtualenv,
add it to a brand-new ``django-admin startproject`` site exactly as the README says, and call
the API through a real server.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, require_service
from tests.factories import image_bytes

pytestmark = pytest.mark.slow

# The source of the wheel; built from a copy so the checkout gets no build/ or egg-info changes.
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "moderation", "vlm_engine", "workers"]
# The web-only test swaps the README's Redis URL for a file-system broker in tmp_path, so it can
# read the wake-up message; the newcomer test changes nothing.
BROKER_SETTINGS = """
CELERY_BROKER_URL = "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = {{"data_folder_in": {folder!r}, "data_folder_out": {folder!r},
                                   "control_folder": {control!r}}}
"""


def _env() -> dict[str, str]:
    """The test run's environment without what points into the checkout or its settings
    (pytest-django sets DJANGO_SETTINGS_MODULE; the site's manage.py must pick its own)."""
    leaks = {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP",
             "CELERY_BROKER_URL"}
    return {k: v for k, v in os.environ.items() if k not in leaks}


def _run(*args: str | Path, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=env or _env())
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _constraints(path: Path) -> Path:
    """requirements.txt's pins as a constraints file (constraints can't carry extras)."""
    lines = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            lines.append(re.sub(r"\[.*?\]", "", line))
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _venv_install(tmp_path: Path, requirement: str) -> Path:
    """A fresh virtualenv without the system's or the test run's packages, with ``requirement``
    installed by the outer pip (no ensurepip), pinned as in requirements.txt; returns its python."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-input",
         "-c", _constraints(tmp_path / "constraints.txt"), requirement, cwd=tmp_path, timeout=900)
    return python


def _wheel_build(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, src / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", dist, src, cwd=tmp_path)
    wheels = list(dist.glob("django_vlm_moderation-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def readme_install_blocks() -> list[tuple[str, str]]:
    """The code blocks of the README's "Install into an existing Django site", as (language, text)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Install into an existing Django site\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)


def _readme_snippets() -> tuple[str, str, str]:
    """The README's mysite/__init__.py, settings.py and urls.py snippets, verbatim."""
    init, settings, urls = [code for language, code in readme_install_blocks() if language == "python"]
    return init, settings, urls


def _readme_commands(word: str) -> list[str]:
    """The README's shell lines that contain ``word``, verbatim."""
    return [line.split("  #")[0].strip() for language, code in readme_install_blocks() if language == "sh"
            for line in code.splitlines() if word in line]


def _site_create(python: Path, tmp_path: Path, extra_settings: str = "") -> Path:
    """``django-admin startproject mysite`` with the README's snippets added as they are written."""
    _run(python, "-m", "django", "startproject", "mysite", cwd=tmp_path)
    site = tmp_path / "mysite"
    init, settings, urls = _readme_snippets()
    (site / "mysite" / "__init__.py").write_text(init)
    settings_path = site / "mysite" / "settings.py"
    settings_path.write_text(settings_path.read_text() + "\n" + settings + extra_settings)
    urls_path = site / "mysite" / "urls.py"
    urls_path.write_text(urls_path.read_text() + "\n" + urls)
    return site


def test_wheel_installs_web_only_into_a_new_site_and_serves_the_api(tmp_path: Path) -> None:
    started = time.monotonic()
    wheel = _wheel_build(tmp_path)

    python = _venv_install(tmp_path, str(wheel))
    venv = python.parent.parent

    # Web-only: neither torch nor transformers came with it.
    for module in ("torch", "transformers"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True,
                               env=_env())
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, (module, probe.stderr)
    # ...and the app is the installed wheel, not the checkout.
    where = _run(python, "-c", "import moderation; print(moderation.__file__)", cwd=tmp_path)
    assert str(venv) in where, where

    broker = tmp_path / "broker"
    for sub in ("messages", "control"):
        (broker / sub).mkdir(parents=True)
    site = _site_create(python, tmp_path, BROKER_SETTINGS.format(folder=str(broker / "messages"),
                                                                 control=str(broker / "control")))
    _run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=site)
    _run(python, "manage.py", "migrate", "--noinput", cwd=site)
    key = _run(python, "manage.py", "moderation_apikey", "alice", cwd=site).strip().splitlines()[-1]
    assert key and " " not in key

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=site, stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "runserver did not come up"
            time.sleep(0.2)

        auth = {"Authorization": f"Api-Key {key}"}
        submitted = requests.post(f"{base}/api/v1/posts/", json={"text": "hello from a plugin site",
                                                                 "external_id": "p-1"},
                                  headers=auth, timeout=30)
        assert submitted.status_code == 202, submitted.text
        body = submitted.json()
        assert body["status"] == "queued"
        # After the commit, one argument-less wake-up for the GPU queue went through the site's broker
        # (sent by the web process's background publisher, so it may land just after the answer).
        deadline = time.monotonic() + 10
        while not (messages := list((broker / "messages").glob("*.msg"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(messages) == 1, messages
        assert messages[0].name.endswith(".gpu.msg"), messages[0].name
        wakeup = json.loads(messages[0].read_text())
        assert wakeup["headers"]["task"] == "moderation.analyze_pending", wakeup["headers"]

        detail = requests.get(f"{base}/api/v1/posts/{body['id']}/", headers=auth, timeout=10)
        assert detail.status_code == 200, detail.text
        assert detail.json()["status"] == "queued"
        assert detail.json()["text"] == "hello from a plugin site"

        again = requests.post(f"{base}/api/v1/posts/", json={"text": "x", "external_id": "p-1"},
                              headers=auth, timeout=30)
        assert again.status_code == 200 and again.json()["id"] == body["id"]

        anonymous = requests.get(f"{base}/api/v1/posts/{body['id']}/", timeout=10)
        assert anonymous.status_code == 401, anonymous.text

        assert requests.get(f"{base}/api/v1/schema/", headers=auth, timeout=30).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    print(f"plugin install and API round trip: {time.monotonic() - started:.1f}s")


def _redis_default_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_newcomer_follows_the_readme_and_gets_a_verdict(tmp_path: Path) -> None:
    """The README's install section, word for word: the worker's pip line, the snippets, the
    manage.py commands and the GPU worker command; offline, so the worker falls back to the tiny
    checkpoints in the default cache directory. Nothing is added to the settings."""
    if not _redis_default_reachable():
        require_service("the README's Redis (127.0.0.1:6379) is not reachable")
    wheel = _wheel_build(tmp_path)
    python = _venv_install(tmp_path, f"{wheel}[engine]")
    bin_dir = python.parent
    env = {**_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    site = _site_create(python, tmp_path)
    shell = functools.partial(subprocess.run, shell=True, cwd=site, env=env, capture_output=True, text=True,
                              timeout=300, executable="/bin/bash")
    outputs = {}
    for command in _readme_commands("python manage.py"):
        result = shell(command)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        outputs[command.split()[2]] = result.stdout
    key = outputs["moderation_apikey"].strip().splitlines()[-1]
    check = shell("python manage.py check --fail-level WARNING")
    assert check.returncode == 0, check.stdout + check.stderr

    [worker_command] = _readme_commands("-Q gpu")
    port = _free_port()
    worker_log, server_log = (tmp_path / "worker.log").open("w"), (tmp_path / "server.log").open("w")
    worker = subprocess.Popen(worker_command, shell=True, cwd=site, env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT, executable="/bin/bash", start_new_session=True)
    server = subprocess.Popen([python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=site,
                              env=env, stdout=server_log, stderr=subprocess.STDOUT)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Api-Key {key}"}
    try:
        _wait_for(f"{base}/healthz", timeout=60, server=server, log=tmp_path / "server.log")
        submitted = requests.post(f"{base}/api/v1/posts/", headers=auth, timeout=30,
                                  files={"image": ("meme.png", image_bytes(), "image/png")},
                                  data={"text": "hello from a newcomer"})
        assert submitted.status_code == 202, submitted.text
        deadline, status = time.monotonic() + 300, "queued"
        while status in {"queued", "analyzing"} and time.monotonic() < deadline:
            time.sleep(1)
            status = requests.get(submitted.json()["url"], headers=auth, timeout=10).json()["status"]
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert status in {"allowed", "needs_review", "removed"}, log[-4000:]
        assert "using the random-weight 'tiny' checkpoints" in log
        stored = list((site / "media").rglob("*.jpg"))
        assert len(stored) == 1, stored
        assert (tmp_path / "cache" / "django-vlm-moderation" / "tiny-models" / "clip").is_dir()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        server.terminate()
        for proc in (worker, server):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        worker_log.close()
        server_log.close()


def _wait_for(url: str, *, timeout: float, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.2)
