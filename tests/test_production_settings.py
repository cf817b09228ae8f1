"""The demo site's production settings pass Django's deployment checks."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_check_deploy_is_clean_at_warning_level(tmp_path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.production",
           "DJANGO_SECRET_KEY": "x9" * 30 + "-production-like-secret-key", "DJANGO_ALLOWED_HOSTS": "moderation.example.com",
           "MODERATION_VAR_DIR": str(tmp_path), "DJANGO_CACHE_URL": "redis://redis:6379/1"}

    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env.update({"DJANGO_SETTINGS_MODULE": "demo.settings.production", "MODERATION_VAR_DIR": str(tmp_path)})

    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr
