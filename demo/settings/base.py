"""Settings shared by every flavour of the demo site; environment variables pick services."""
from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("MODERATION_VAR_DIR", BASE_DIR / "var"))

# No fallback here: only the DEBUG flavours (dev, test) may supply a fixed key; anything else
# without DJANGO_SECRET_KEY is refused by Django ("The SECRET_KEY setting must not be empty").
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "moderation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves collected static files (admin, Swagger UI) from gunicorn, with far-future caching.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60)
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The worker and the web process share the file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
# Without collectstatic (dev, tests) WhiteNoise serves the apps' static files directly.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MODERATION_MEDIA_ROOT", VAR_DIR / "media"))
FILE_UPLOAD_PERMISSIONS = 0o640
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

# A cache every process shares (API throttle buckets), e.g. redis://redis:6379/1. Without it each
# process has its own memory cache, which `check --deploy` refuses while throttling is on.
if os.environ.get("DJANGO_CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ["DJANGO_CACHE_URL"]}}

# Without CELERY_BROKER_URL: a broker that needs no server, its messages rows of a SQLite file
# in var/ (demo/broker.py). Any other URL (redis://...) is used as it is.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or f"sqlite:///{VAR_DIR / 'broker.sqlite3'}"
if CELERY_BROKER_URL.startswith("sqlite:"):
    CELERY_BROKER_TRANSPORT = "demo.broker:Transport"
    VAR_DIR.mkdir(parents=True, exist_ok=True)

MODERATION = {
    "PROFILE": os.environ.get("MODERATION_PROFILE", "small"),
    "DEVICE": os.environ.get("MODERATION_DEVICE", "cpu"),
    "TINY_CHECKPOINT_DIR": str(Path(os.environ.get("MODERATION_TINY_DIR", VAR_DIR / "tiny-models"))),
    "BATCH_SIZE": int(os.environ.get("MODERATION_BATCH_SIZE", "16")),
    "SWEEP_INTERVAL": float(os.environ.get("MODERATION_SWEEP_INTERVAL", "15")),
    "WEBHOOK_INTERVAL": float(os.environ.get("MODERATION_WEBHOOK_INTERVAL", "10")),
    # Any other MODERATION key, as a JSON object (e.g. '{"CLAIM_TIMEOUT": 60}').
    **json.loads(os.environ.get("MODERATION_SETTINGS_JSON", "{}")),
}

REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}

SPECTACULAR_SETTINGS = {
    "TITLE": "django-vlm-moderation API",
    "DESCRIPTION": "Submit image-plus-text posts and read verdicts. Authenticate with `Authorization: Api-Key <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own console handler (active with DEBUG) would print every record the root handler
    # prints again, so each 4xx appeared twice: Django's records go to the root handler only.
    "loggers": {"django": {"handlers": [], "level": "INFO", "propagate": True}},
}
