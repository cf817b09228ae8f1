"""Test settings: PostgreSQL/Redis when DATABASE_URL/CELERY_BROKER_URL are set, SQLite otherwise."""
from __future__ import annotations

import os

from .base import *  # noqa: F401,F403
from .base import DATABASES, MODERATION, SECRET_KEY, VAR_DIR

# The suite's own processes only; this flavour never serves anyone.
SECRET_KEY = SECRET_KEY or "django-insecure-test-suite-only-never-deploy-this-key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The per-address limit of keyless requests is off: every test client comes from 127.0.0.1 and the
# memory cache outlives tests, so the suite's 401 checks would share one budget. Its tests turn it on.
MODERATION = {**MODERATION, "PROFILE": "tiny", "ANON_THROTTLE_RATE": None}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so that worker processes started by the tests see the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
ALLOWED_HOSTS = ["*"]
# Live-server threads must not keep connections open past a test: the test database is
# dropped at the end of the run. Worker processes started by a test may keep theirs.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("MODERATION_TEST_CONN_MAX_AGE", "0"))

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (WhiteNoise warns when it is missing)
