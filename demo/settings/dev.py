"""The embedded default: SQLite, files on disk, the SQLite broker, DEBUG on, loopback only."""
from __future__ import annotations

from .base import *  # noqa: F401,F403
from .base import LOGGING, SECRET_KEY

DEBUG = True
# Only this DEBUG flavour may run without DJANGO_SECRET_KEY; the key is then a fixed, public one.
SECRET_KEY = SECRET_KEY or "django-insecure-demo-dev-only-never-deploy-this-key"

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (WhiteNoise warns when it is missing)

# `make run` shares one terminal between the web server and the worker: keep the worker's
# line per periodic task (beat wakes the sweeper and the webhook sender every few seconds) out
# of it. Warnings, errors and the engine's notices still show.
LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"], **{name: {"level": "WARNING"} for name in
                                  ("celery.beat", "celery.app.trace", "celery.worker.strategy")}}}
