"""Idempotency-Key on submit: replay, different body, concurrent retry."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from moderation.models import IdempotencyRecord, Post
from moderation.services.idempotency import idempotency_begin
from tests.factories import image_bytes

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


def test_retry_while_first_is_in_progress_is_409(api, client_user):  # type: ignore[no-untyped-def]
    from moderation.services.idempotency import idempotency_request_hash

    # The first request reserved the key and has not answered yet.
    idempotency_begin(client=client_user, key="k3",
                      request_hash=idempotency_request_hash(fields={"text": "hello"}, file_bytes=None))

    response = api.post(POSTS, {"text": "hello"}, format="json", HTTP_IDEMPOTENCY_KEY="k3")

    assert (response.status_code, response.json()["code"]) == (409, "idempotency_in_progress")
    assert Post.objects.count() == 0


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
