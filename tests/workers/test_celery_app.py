"""The shipped Celery app: queues, routes and beat from MODERATION, and no settings module of its own."""
from __future__ import annotations

import os
import subprocess
import sys

from django.test import override_settings
from kombu import Queue

from tests.conftest import ROOT
from workers.celery import moderation_celery_config


def test_queues_routes_and_beat_follow_the_moderation_settings() -> None:
    custom = {"GPU_QUEUE": "a100", "DEFAULT_QUEUE": "cpu", "ANALYZE_TASK": "site.analyze",
              "REQUEST_TASK": "site.requests", "WEBHOOK_TASK": "site.webhooks", "SWEEP_INTERVAL": 2,
              "WEBHOOK_INTERVAL": 3.5}
    with override_settings(MODERATION=custom):
        config = moderation_celery_config()

    assert config["task_default_queue"] == "cpu"
    assert config["task_queues"] == [Queue("a100"), Queue("cpu")]
    assert config["task_routes"] == {
        "site.analyze": {"queue": "a100"}, "site.requests": {"queue": "a100"}, "moderation.retrain": {"queue": "a100"},
        "site.webhooks": {"queue": "cpu"}, "moderation.sweep": {"queue": "cpu"},
        "moderation.purge_content": {"queue": "cpu"}, "moderation.submit_statements": {"queue": "cpu"}}
    assert config["beat_schedule"]["moderation-sweep"] == {"task": "moderation.sweep", "schedule": 2.0}
    assert config["beat_schedule"]["moderation-webhooks"] == {"task": "site.webhooks", "schedule": 3.5}
    assert "moderation-statements" not in config["beat_schedule"]  # no transparency database configured


def test_beat_runs_the_statement_submitter_once_a_database_is_configured() -> None:
    with override_settings(MODERATION={"TRANSPARENCY_DB_URL": "https://transparency.example.eu",
                                       "TRANSPARENCY_DB_TOKEN": "t", "TRANSPARENCY_DB_INTERVAL": 30}):
        config = moderation_celery_config()

    assert config["beat_schedule"]["moderation-statements"] == {"task": "moderation.submit_statements",
                                                                "schedule": 30.0}


def test_the_configured_app_routes_by_the_settings() -> None:
    from workers.celery import app

    assert app.conf.task_routes["moderation.analyze_pending"] == {"queue": "gpu"}
    assert app.conf.task_default_queue == "default"
    assert app.conf.beat_schedule["moderation-sweep"]["schedule"] == 15.0


def test_the_app_requires_an_explicit_settings_module() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL"}}
    result = subprocess.run([sys.executable, "-c", "from workers.celery import app; print(app.conf.task_routes)"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert "ImproperlyConfigured: The moderation workers read your Django settings: set DJANGO_SETTINGS_MODULE" \
        in result.stderr
