"""The API's contract at its edges: field codes, unknown fields, cursors, nesting, unexpected errors."""
from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile

from moderation.models import EngineRequest, Post, WebhookEndpoint
from tests.factories import PostFactory, image_bytes

pytestmark = pytest.mark.django_db

POSTS = "/api/v1/posts/"


@pytest.mark.parametrize(("body", "code"), [
    ({"text": "a\x00b"}, "text_invalid"),
    ({"text": "x", "metadata": [1, 2]}, "metadata_invalid"),
    ({"text": "x", "metadata": "{not json"}, "metadata_invalid"),
    ({"text": "x", "metadata": "[1]"}, "metadata_invalid"),
    ({"text": "x", "metadata": {"a": "b\x00"}}, "metadata_invalid"),
], ids=["nul-text", "array", "malformed-string", "string-of-array", "nul-metadata"])
def test_json_body_field_errors_have_their_codes(api, body, code):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert Post.objects.count() == 0


def test_garbage_cursor_is_400_cursor_invalid(api):  # type: ignore[no-untyped-def]
    response = api.get(POSTS, {"cursor": "not-a-cursor!"})

    assert (response.status_code, response.json()["code"]) == (400, "cursor_invalid")


@pytest.mark.parametrize("fmt", ["multipart", "json"])
def test_unknown_body_field_is_refused(api, fmt):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"text": "hello", "extrnal_id": "x"}, format=fmt)

    assert (response.status_code, response.json()) == (400, {"code": "unknown_field",
                                                             "message": "Unknown field(s): extrnal_id."})
    assert Post.objects.count() == 0


@pytest.mark.parametrize(("path", "body"), [
    ("questions", {"question": "q", "lang": "en"}), ("groundings", {"phrases": ["p"], "threshold": 0.1}),
    ("captions", {"prompt": "p", "question": "q"}),
])
def test_unknown_fields_of_ad_hoc_requests_are_refused(api, client_user, path, body):  # type: ignore[no-untyped-def]
    post = PostFactory(client=client_user)
    post.image.save("x.jpg", ContentFile(image_bytes("JPEG")), save=True)

    response = api.post(f"/api/v1/posts/{post.pk}/{path}/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "unknown_field")
    assert EngineRequest.objects.count() == 0


def test_unknown_field_of_webhook_is_refused(api):  # type: ignore[no-untyped-def]
    response = api.put("/api/v1/webhook/", {"url": "https://example.com/h", "secret": "mine"}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "unknown_field")
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(("path", "setting", "body", "code", "schema_field"), [
    ("questions", {"MAX_QUESTION_LENGTH": 10}, {"question": "x" * 11}, "question_invalid", ("QuestionInput", "question", "maxLength", 10)),
    ("groundings", {"MAX_PHRASES": 2}, {"phrases": ["a", "b", "c"]}, "phrases_invalid", ("GroundingInput", "phrases", "maxItems", 2)),
    ("groundings", {"MAX_PHRASE_LENGTH": 3}, {"phrases": ["abcd"]}, "phrase_invalid", ("GroundingInput", "phrases", "maxItems", 20)),
    ("captions", {"MAX_CAPTION_PROMPT_LENGTH": 4}, {"prompt": "abcde"}, "prompt_invalid", ("CaptionInput", "prompt", "maxLength", 4)),
])
def test_ad_hoc_limits_come_from_settings_in_checks_and_schema(api, client_user, settings, path, setting, body, code,
                                                               schema_field):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, **setting}
    post = PostFactory(client=client_user)
    post.image.save("x.jpg", ContentFile(image_bytes("JPEG")), save=True)

    response = api.post(f"/api/v1/posts/{post.pk}/{path}/", body, format="json")
    schema = api.get("/api/v1/schema/", {"format": "json"}).json()

    assert (response.status_code, response.json()["code"]) == (400, code)
    component, field, key, value = schema_field
    assert schema["components"]["schemas"][component]["properties"][field][key] == value
    assert EngineRequest.objects.count() == 0


def test_deeply_nested_json_body_is_a_parse_error(api):  # type: ignore[no-untyped-def]
    body = '{"text": "x", "metadata": ' + "[" * 50_000 + "]" * 50_000 + "}"

    response = api.generic("POST", POSTS, body, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (400, "parse_error")


@pytest.mark.parametrize("depth", [33, 50_000])
def test_deeply_nested_metadata_is_invalid(api, depth):  # type: ignore[no-untyped-def]
    metadata = '{"a": ' + "[" * depth + "]" * depth + "}"

    response = api.post(POSTS, {"text": "x", "metadata": metadata}, format="multipart")

    assert (response.status_code, response.json()["code"]) == (400, "metadata_invalid")
    assert Post.objects.count() == 0


def test_metadata_nested_32_deep_is_accepted(api):  # type: ignore[no-untyped-def]
    metadata = json.dumps({"a": json.loads("[" * 31 + "]" * 31)})

    assert api.post(POSTS, {"text": "x", "metadata": metadata}, format="multipart").status_code == 202


def test_unexpected_error_is_json_500(api, monkeypatch, caplog):  # type: ignore[no-untyped-def]
    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database on fire")

    monkeypatch.setattr("moderation.api.posts.post_list", broken)

    response = api.get(POSTS)

    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json() == {"code": "server_error", "message": "An unexpected error occurred."}
    assert "database on fire" not in response.content.decode()
    assert any(r.exc_info and "database on fire" in str(r.exc_info[1]) for r in caplog.records)
