"""The app as a plugin: build the wheel, install it web-only (no torch) into a fresh virtualenv,
add it to a brand-new ``django-admin startproject`` site exactly as the README says, and call
the API through a real server.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# The source of the wheel; built from a copy so the checkout gets no build/ or egg-info changes.
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "moderation", "vlm_engine", "workers"]
# The README's lines (keep the two in step). Only the broker differs: the README's Redis URL is
# replaced by a file-system broker in tmp_path, so the test can see the wake-up message.
README_INSTALLED_APPS = ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar", "moderation"]
README_SETTINGS = """
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
MODERATION = {"PROFILE": "tiny"}
"""
README_URL = 'path("", include("moderation.urls")),'
# mysite/__init__.py: the web process sends wake-ups with celery.current_app, which reads the
# CELERY_* Django settings only once a Celery app configured from them is loaded.
README_PROJECT_INIT = "from workers.celery import app as celery_app\n"
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


def _run(*args: str | Path, cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=_env())
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


def _site_create(python: Path, tmp_path: Path, broker: Path) -> Path:
    """``django-admin startproject mysite`` edited as the README says."""
    _run(python, "-m", "django", "startproject", "mysite", cwd=tmp_path)
    site = tmp_path / "mysite"
    settings = site / "mysite" / "settings.py"
    text = settings.read_text()
    text, count = re.subn(r"(INSTALLED_APPS = \[\n(?:    .*\n)*?)\]",
                          lambda m: m.group(1) + "".join(f'    "{app}",\n' for app in README_INSTALLED_APPS)
                          + "]", text, count=1)
    assert count == 1, "INSTALLED_APPS not found in the generated settings.py"
    for sub in ("messages", "control"):
        (broker / sub).mkdir(parents=True)
    settings.write_text(text + README_SETTINGS + BROKER_SETTINGS.format(
        folder=str(broker / "messages"), control=str(broker / "control")))
    (site / "mysite" / "__init__.py").write_text(README_PROJECT_INIT)
    urls = site / "mysite" / "urls.py"
    text = urls.read_text().replace("from django.urls import path", "from django.urls import include, path")
    text, count = re.subn(r"(urlpatterns = \[\n(?:    .*\n)*?)\]", lambda m: m.group(1) + f"    {README_URL}\n]",
                          text, count=1)
    assert count == 1 and "include," in text, "urlpatterns not found in the generated urls.py"
    urls.write_text(text)
    return site


def test_wheel_installs_web_only_into_a_new_site_and_serves_the_api(tmp_path: Path) -> None:
    started = time.monotonic()
    wheel = _wheel_build(tmp_path)

    # A fresh virtualenv without the system's or the test run's packages; the outer pip installs
    # into it (no ensurepip). The wheel brings its own dependencies, pinned as in requirements.txt.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-input",
         "-c", _constraints(tmp_path / "constraints.txt"), wheel, cwd=tmp_path, timeout=600)

    # Web-only: neither torch nor transformers came with it.
    for module in ("torch", "transformers"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True,
                               env=_env())
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, (module, probe.stderr)
    # ...and the app is the installed wheel, not the checkout.
    where = _run(python, "-c", "import moderation; print(moderation.__file__)", cwd=tmp_path)
    assert str(venv) in where, where

    broker = tmp_path / "broker"
    site = _site_create(python, tmp_path, broker)
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
