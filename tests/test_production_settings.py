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


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_wsgi_requires_an_explicit_settings_module() -> None:
    result = subprocess.run([sys.executable, "-c", "import demo.wsgi"], cwd=ROOT, capture_output=True, text=True,
                            env=_without("DJANGO_SETTINGS_MODULE"), timeout=120)

    assert result.returncode == 1
    assert "ImproperlyConfigured: Set DJANGO_SETTINGS_MODULE (demo.settings.production to serve" in result.stderr


def test_only_debug_settings_fall_back_to_a_fixed_secret_key(tmp_path):  # type: ignore[no-untyped-def]
    probe = "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY)"

    def run(module: str, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {**_without("DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE"), "DJANGO_SETTINGS_MODULE": module,
               "MODERATION_VAR_DIR": str(tmp_path), "DJANGO_ALLOWED_HOSTS": "example.com", **extra}
        return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)

    dev = run("demo.settings.dev")
    assert dev.stdout == "True django-insecure-demo-dev-only-never-deploy-this-key\n", dev.stderr
    base = run("demo.settings.base")
    assert base.returncode == 1 and "The SECRET_KEY setting must not be empty" in base.stderr
    borrowed = run("demo.settings.production", DJANGO_SECRET_KEY="django-insecure-demo-dev-only-never-deploy-this-key")
    assert borrowed.returncode == 1 and "Set DJANGO_SECRET_KEY to 50 or more random characters" in borrowed.stderr
