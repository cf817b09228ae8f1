"""The demo site's logging: each request Django logs is printed once, with DEBUG on or off."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

REQUEST = """
import django
django.setup()
from django.test import Client
Client(HTTP_HOST="127.0.0.1").get("/api/v1/posts/")
Client(HTTP_HOST="127.0.0.1").get("/api/v1/posts/not-a-post/", HTTP_AUTHORIZATION="Api-Key nope")
"""


@pytest.mark.parametrize("settings_module", ["demo.settings.dev", "demo.settings.test"])
def test_each_4xx_is_logged_once(tmp_path, settings_module):  # type: ignore[no-untyped-def]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, "MODERATION_VAR_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}

    result = subprocess.run([sys.executable, "-c", REQUEST], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)

    lines = [line for line in result.stderr.splitlines() if line.startswith("Unauthorized: ")]
    assert lines == ["Unauthorized: /api/v1/posts/", "Unauthorized: /api/v1/posts/not-a-post/"], result.stderr
