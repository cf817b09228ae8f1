"""Throttling: buckets shared through the cache by every process, keyless requests limited per address."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import yaml
from django.core.cache import cache

from moderation.checks import moderation_throttle_cache_check
from tests.conftest import ROOT, require_service

pytestmark = pytest.mark.django_db

POSTS = "/api/v1/posts/"
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/3"}}


@pytest.fixture
def anon_limit(settings):  # type: ignore[no-untyped-def]
    cache.clear()
    settings.MODERATION = {**settings.MODERATION, "ANON_THROTTLE_RATE": "3/min"}
    yield
    cache.clear()


@pytest.mark.parametrize(("caches", "rates", "ids"), [
    (LOCMEM, {}, ["moderation.E012"]),
    ({"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}, {}, ["moderation.E012"]),
    (LOCMEM, {"THROTTLE_RATE": None}, ["moderation.E012"]),  # the keyless limit still needs it
    (LOCMEM, {"THROTTLE_RATE": None, "ANON_THROTTLE_RATE": None}, []),
    (REDIS, {}, []),
])
def test_deploy_check_requires_a_shared_cache_while_throttling(settings, caches, rates, ids):  # type: ignore[no-untyped-def]
    settings.CACHES = caches
    settings.MODERATION = {**settings.MODERATION, "ANON_THROTTLE_RATE": "60/min", **rates}

    assert [e.id for e in moderation_throttle_cache_check()] == ids


def test_compose_gives_every_app_container_the_redis_cache():  # type: ignore[no-untyped-def]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

    assert compose["x-app"]["environment"]["DJANGO_CACHE_URL"] == "${DJANGO_CACHE_URL:-redis://redis:6379/1}"
    assert "redis" in compose["services"]


def test_production_without_a_shared_cache_fails_check_deploy(tmp_path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_CACHE_URL"}
    env.update({"DJANGO_SETTINGS_MODULE": "demo.settings.production", "DJANGO_SECRET_KEY": "x9" * 30 + "-prod-key",
                "DJANGO_ALLOWED_HOSTS": "moderation.example.com", "MODERATION_VAR_DIR": str(tmp_path)})

    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode != 0 and "moderation.E012" in result.stderr


def test_keyless_requests_are_limited_per_address(client_user, anon_limit, django_assert_num_queries):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    from moderation.services.apikeys import apikey_create

    spent, other = APIClient(REMOTE_ADDR="203.0.113.5"), APIClient(REMOTE_ADDR="203.0.113.6")

    codes = [spent.get(POSTS).status_code for _ in range(4)]
    with django_assert_num_queries(0):  # no key, no lookup: the refusal costs nothing
        again = spent.get(POSTS)
    spent.credentials(HTTP_AUTHORIZATION="Api-Key vlm_guess.guess")
    guessed = spent.get(POSTS)
    _, raw = apikey_create(user=client_user)
    spent.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    behind_the_same_address = spent.get(POSTS)

    assert codes == [401, 401, 401, 429]
    assert (again.status_code, again.json()["code"]) == (429, "throttled") and int(again["Retry-After"]) > 0
    assert (guessed.status_code, guessed.json()["code"]) == (429, "throttled")
    assert behind_the_same_address.status_code == 200  # a valid key is never locked out by its neighbours
    assert other.get(POSTS).status_code == 401


def test_address_comes_from_the_configured_forwarded_header(anon_limit, settings):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    settings.MODERATION = {**settings.MODERATION, "CLIENT_IP_HEADER": "X-Forwarded-For"}
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")

    first = [proxy.get(POSTS, HTTP_X_FORWARDED_FOR=f"{spoof}, 198.51.100.7").status_code
             for spoof in ("1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4")]
    other = proxy.get(POSTS, HTTP_X_FORWARDED_FOR="198.51.100.7, 198.51.100.8")

    assert first == [401, 401, 401, 429]  # the client-written left part does not make a new bucket
    assert other.status_code == 401


SUBPROCESS_REQUEST = """
import sys, django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings
with override_settings(MODERATION={**settings.MODERATION, "ANON_THROTTLE_RATE": "3/min"}):
    print(Client(REMOTE_ADDR=sys.argv[1]).get("/api/v1/posts/").status_code)
"""


def test_buckets_are_shared_between_processes_through_redis(settings):  # type: ignore[no-untyped-def]
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        require_service("a shared cache needs Redis (set CELERY_BROKER_URL=redis://…)")
    from rest_framework.test import APIClient

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": broker}}
    settings.MODERATION = {**settings.MODERATION, "ANON_THROTTLE_RATE": "3/min"}
    address = f"198.51.100.{uuid.uuid4().int % 200 + 1}"
    cache.delete_many([f"throttle_moderation_unauthenticated_{address}"])
    local = [APIClient(REMOTE_ADDR=address).get(POSTS).status_code for _ in range(3)]

    other_process = subprocess.run([sys.executable, "-c", SUBPROCESS_REQUEST, address], cwd=ROOT,
                                   env={**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.test",
                                        "DJANGO_CACHE_URL": broker}, capture_output=True, text=True, timeout=120)
    cache.delete_many([f"throttle_moderation_unauthenticated_{address}"])

    assert local == [401, 401, 401]
    assert other_process.stdout.strip().splitlines()[-1] == "429", other_process.stderr


@pytest.mark.parametrize(("override", "ids"), [
    ({"ANON_THROTTLE_RATE": "lots"}, ["moderation.E009"]),
    ({"REVIEWER_REQUEST_RATE": "30 per minute"}, ["moderation.E009"]),
    ({"CLIENT_IP_HEADER": ""}, ["moderation.E011"]),
    ({"CLIENT_IP_HEADER": ["X-Forwarded-For"]}, ["moderation.E011"]),
    ({"CLIENT_IP_HEADER": "X-Forwarded-For", "ANON_THROTTLE_RATE": None}, []),
])
def test_rate_and_header_settings_are_checked(settings, override, ids):  # type: ignore[no-untyped-def]
    from moderation.checks import moderation_settings_check

    settings.MODERATION = {**settings.MODERATION, **override}

    assert [e.id for e in moderation_settings_check()] == ids
