"""Idempotency-Key on submit: replay, different body, concurrent retry, failures mid-request, expiry."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from moderation.models import IdempotencyRecord, Post, PostEvent
from moderation.services.idempotency import (idempotency_atomic, idempotency_begin, idempotency_expired_delete,
                                             idempotency_request_hash)
from tests.conftest import require_service
from tests.factories import image_bytes
from workers.tasks import sweep

pytestmark = pytest.mark.django_db
POSTS = "/api/v1/posts/"


def test_same_key_same_body_replays_first_response(api):  # type: ignore[no-untyped-def]
    first = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    second = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Post.objects.count() == 1


def test_same_key_with_same_image_replays(api):  # type: ignore[no-untyped-def]
    data = image_bytes()

    def send():  # type: ignore[no-untyped-def]
        return api.post(POSTS, {"image": SimpleUploadedFile("a.png", data, "image/png"), "text": "t"},
                        format="multipart", HTTP_IDEMPOTENCY_KEY="img")

    assert send().json()["id"] == send().json()["id"]
    assert Post.objects.count() == 1


def test_same_key_different_body_is_422(api):  # type: ignore[no-untyped-def]
    api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")

    response = api.post(POSTS, {"text": "something else"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")

    assert (response.status_code, response.json()["code"]) == (422, "idempotency_key_reused")
    assert Post.objects.count() == 1


def test_refusal_is_replayed_too(api):  # type: ignore[no-untyped-def]
    first = api.post(POSTS, {"text": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k4")
    second = api.post(POSTS, {"text": ""}, format="json", HTTP_IDEMPOTENCY_KEY="k4")

    assert (first.status_code, second.status_code) == (400, 400)
    assert second.json() == first.json() == {"code": "post_empty", "message": "A post needs an image, a text, or both."}


def test_keys_are_scoped_per_client(api, other_api):  # type: ignore[no-untyped-def]
    a = api.post(POSTS, {"text": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    b = other_api.post(POSTS, {"text": "y"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")

    assert (a.status_code, b.status_code) == (202, 202)
    assert IdempotencyRecord.objects.count() == 2


def test_overlong_key_is_400(api):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"text": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 300)

    assert (response.status_code, response.json()["code"]) == (400, "idempotency_key_invalid")


def _hash(text: str) -> str:
    return idempotency_request_hash(fields={"text": text}, file_bytes=None)


def test_reservation_without_response_is_taken_over(api, client_user):  # type: ignore[no-untyped-def]
    # What a request that died mid-way left behind before keys and work shared one transaction.
    IdempotencyRecord.objects.create(client=client_user, key="orphan", request_hash=_hash("hello"))

    response = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="orphan")

    assert response.status_code == 202
    assert list(Post.objects.values_list("id", flat=True)) == [uuid.UUID(response.json()["id"])]
    record = IdempotencyRecord.objects.get(client=client_user, key="orphan")
    assert (record.response_status, record.response_body) == (202, response.json())


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", ["reserved", "inserted"])
def test_failure_before_completion_leaves_nothing_and_retry_creates_once(api, monkeypatch, step):  # type: ignore[no-untyped-def]
    def crash_at(*, step: str, key: str) -> None:
        if step == crashing:
            raise Crash(step)

    crashing = step
    monkeypatch.setattr("moderation.api.idempotency.idempotency_crash_point", crash_at)
    crashed = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k5")
    # The API answers an unexpected error as JSON, so the crash reaches the test as a 500.
    assert (crashed.status_code, crashed.json()["code"]) == (500, "server_error")

    assert (Post.objects.count(), PostEvent.objects.count(), IdempotencyRecord.objects.count()) == (0, 0, 0)
    crashing = "none"
    retry = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k5")

    assert (retry.status_code, retry.has_header("Idempotent-Replayed")) == (202, False)
    assert list(Post.objects.values_list("id", flat=True)) == [uuid.UUID(retry.json()["id"])]
    assert list(PostEvent.objects.values_list("to_state", flat=True)) == ["queued"]


def test_failure_after_completion_keeps_post_and_retry_replays_it(api, monkeypatch):  # type: ignore[no-untyped-def]
    def crash_at(*, step: str, key: str) -> None:
        if step == "completed":
            raise Crash(step)

    monkeypatch.setattr("moderation.api.idempotency.idempotency_crash_point", crash_at)
    crashed = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k6")
    # The API answers an unexpected error as JSON, so the crash reaches the test as a 500.
    assert (crashed.status_code, crashed.json()["code"]) == (500, "server_error")
    monkeypatch.undo()

    retry = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k6")

    assert (retry.status_code, retry["Idempotent-Replayed"]) == (202, "true")
    assert list(Post.objects.values_list("id", flat=True)) == [uuid.UUID(retry.json()["id"])]


def test_completion_that_meets_a_concurrent_one_is_409_and_keeps_nothing(api, client_user, monkeypatch):  # type: ignore[no-untyped-def]
    def concurrent_completion(*, step: str, key: str) -> None:
        # Another request completed the key after this one read it (PostgreSQL: between this
        # request's snapshot and its lock).
        if step == "inserted":
            IdempotencyRecord.objects.create(client=client_user, key=key, request_hash=_hash("hello"),
                                             response_status=202, response_body={"id": "theirs"})

    monkeypatch.setattr("moderation.api.idempotency.idempotency_crash_point", concurrent_completion)

    response = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k11")

    assert (response.status_code, response.json()["code"]) == (409, "idempotency_in_progress")
    assert (Post.objects.count(), PostEvent.objects.count()) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_begin_outside_its_transaction_is_refused(client_user):  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="inside idempotency_atomic"):
        idempotency_begin(client=client_user, key="k7", request_hash=_hash("hello"))


@pytest.mark.django_db(transaction=True)
def test_retry_while_first_is_alive_is_409_then_runs_when_it_is_gone(api, client_user):  # type: ignore[no-untyped-def]
    if connection.vendor != "postgresql":
        require_service("a live request holding its key from another session needs PostgreSQL (set DATABASE_URL)")
    holding, release = threading.Event(), threading.Event()

    def first_request() -> None:  # holds the key in its own session, then dies without answering
        try:
            with idempotency_atomic():
                idempotency_begin(client=client_user, key="k8", request_hash=_hash("hello"))
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=first_request)
    thread.start()
    assert holding.wait(30)
    during = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k8")
    release.set()
    thread.join(30)
    after = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k8")

    assert (during.status_code, during.json()["code"]) == (409, "idempotency_in_progress")
    assert after.status_code == 202
    assert list(Post.objects.values_list("id", flat=True)) == [uuid.UUID(after.json()["id"])]


def test_expired_key_is_treated_as_new(api, client_user, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "IDEMPOTENCY_KEY_TTL": 3600}
    first = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k9")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(seconds=3601))

    again = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k9")

    assert (first.status_code, again.status_code, again.has_header("Idempotent-Replayed")) == (202, 202, False)
    assert again.json()["id"] != first.json()["id"]
    assert Post.objects.count() == 2
    record = IdempotencyRecord.objects.get(client=client_user, key="k9")
    assert record.response_body["id"] == again.json()["id"]


def test_key_within_its_lifetime_replays(api, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "IDEMPOTENCY_KEY_TTL": 3600}
    first = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k10")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(seconds=3590))

    again = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k10")

    assert (again.json()["id"], again["Idempotent-Replayed"]) == (first.json()["id"], "true")


def test_keys_expire_after_24_hours_by_default(client_user):  # type: ignore[no-untyped-def]
    now = timezone.now()
    for key, age in (("day-old", timedelta(hours=24, seconds=1)), ("fresh", timedelta(hours=23, minutes=59))):
        IdempotencyRecord.objects.create(client=client_user, key=key, request_hash=_hash(key),
                                         response_status=202, response_body={}, created_at=now - age)

    assert idempotency_expired_delete() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_sweep_deletes_expired_records(client_user, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "IDEMPOTENCY_KEY_TTL": 60}
    now = timezone.now()
    for key, age in (("old", 61), ("new", 30)):
        IdempotencyRecord.objects.create(client=client_user, key=key, request_hash=_hash(key),
                                         response_status=202, response_body={}, created_at=now - timedelta(seconds=age))

    result = sweep()

    assert result["idempotency_expired"] == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.parametrize("ttl", [0, -1, 1.5, None])
def test_key_lifetime_must_be_a_positive_integer(ttl):  # type: ignore[no-untyped-def]
    with override_settings(MODERATION={"IDEMPOTENCY_KEY_TTL": ttl}):
        errors = [e for e in run_checks() if e.id.startswith("moderation.")]

    assert [(e.id, e.msg) for e in errors] == [
        ("moderation.E004", f"MODERATION['IDEMPOTENCY_KEY_TTL'] must be a positive integer, not {ttl!r}.")]
