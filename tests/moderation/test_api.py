"""The v1 API: submit, detail, list, auth, client isolation, refused uploads."""
from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from moderation.models import Post, PostEvent
from tests.factories import PostFactory, image_bytes

pytestmark = pytest.mark.django_db
POSTS = "/api/v1/posts/"


def upload(data: bytes, name: str = "meme.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def stored_files(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_submit_image_and_text_returns_202_and_queues(api, client_user, settings):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"image": upload(image_bytes()), "text": "look at this",
                                "metadata": '{"lang": "en"}'}, format="multipart")

    assert response.status_code == 202
    body = response.json()
    post = Post.objects.get(pk=body["id"])
    assert body["status"] == "queued"
    assert body["url"] == f"http://testserver/api/v1/posts/{post.pk}/"
    assert body["image"]["width"] == 64 and body["image"]["height"] == 48 and body["image"]["format"] == "PNG"
    assert post.client == client_user and post.text == "look at this" and post.metadata == {"lang": "en"}
    assert post.image.name.endswith(f"{post.pk}.jpg")
    assert Image.open(post.image.path).format == "JPEG"
    assert list(PostEvent.objects.filter(post=post).values_list("to_state", flat=True)) == ["queued"]


def test_submit_text_only_as_json(api):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"text": "words only"}, format="json")

    assert response.status_code == 202
    assert response.json()["image"] is None


def test_same_external_id_returns_existing_post(api):  # type: ignore[no-untyped-def]
    first = api.post(POSTS, {"text": "a", "external_id": "ext-1"}, format="json")
    second = api.post(POSTS, {"text": "b", "external_id": "ext-1"}, format="json")

    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Post.objects.count() == 1


def test_external_id_is_scoped_per_client(api, other_api):  # type: ignore[no-untyped-def]
    a = api.post(POSTS, {"text": "a", "external_id": "same"}, format="json")
    b = other_api.post(POSTS, {"text": "b", "external_id": "same"}, format="json")

    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] != b.json()["id"]


def exif_rotated_jpeg() -> bytes:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    exif[0x010F] = "SecretCam"
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_upload_is_reencoded_with_orientation_applied_and_exif_stripped(api):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"image": upload(exif_rotated_jpeg(), "r.jpg", "image/jpeg")}, format="multipart")

    post = Post.objects.get(pk=response.json()["id"])
    stored = Image.open(post.image.path)
    assert (post.image_width, post.image_height) == (20, 40)
    assert stored.size == (20, 40)
    assert dict(stored.getexif()) == {}


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [
        (b"<html><script>alert(1)</script></html>", "x.png", 400, "image_format"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "x.svg", 400, "image_format"),
        (image_bytes("BMP"), "x.bmp", 400, "image_format"),
        (image_bytes("JPEG", size=(200, 200))[:300], "x.jpg", 400, "image_corrupt"),
        (b"", "empty.png", 400, "image_empty"),
        (bomb_png(), "bomb.png", 400, "image_too_many_pixels"),
    ],
    ids=["html", "svg", "bmp", "truncated", "empty", "too-many-pixels"],
)
def test_refused_uploads_store_nothing(api, settings, data, name, status, code):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_IMAGE_PIXELS": 50_000_000}

    response = api.post(POSTS, {"image": upload(data, name), "text": "t"}, format="multipart")

    assert response.status_code == status
    assert response.json()["code"] == code
    assert Post.objects.count() == 0 and PostEvent.objects.count() == 0
    assert stored_files(settings) == []


def test_too_many_bytes_is_413(api, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_UPLOAD_BYTES": 1000}

    response = api.post(POSTS, {"image": upload(image_bytes("PNG", size=(300, 300), color=(1, 2, 3)) + b"\0" * 2000)},
                        format="multipart")

    assert response.status_code == 413
    assert response.json()["code"] == "image_too_large"
    assert Post.objects.count() == 0 and stored_files(settings) == []


def test_pixel_cap_from_settings(api, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_IMAGE_PIXELS": 1000}

    response = api.post(POSTS, {"image": upload(image_bytes(size=(100, 100)))}, format="multipart")

    assert (response.status_code, response.json()["code"]) == (400, "image_too_many_pixels")
    assert Post.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "post_empty"),
        ({"text": "   "}, "post_empty"),
        ({"text": "a\x00b"}, "text_invalid"),
        ({"text": "x" * 5001}, "text_too_long"),
        ({"text": "x", "metadata": "[1, 2]"}, "metadata_invalid"),
    ],
    ids=["nothing", "blank", "nul", "too-long", "metadata-not-object"],
)
def test_refused_payloads_store_nothing(api, payload, code):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, payload, format="multipart")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert Post.objects.count() == 0


def test_unauthenticated_is_401_with_code(client, db):  # type: ignore[no-untyped-def]
    response = client.get(POSTS)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Api-Key"


def test_wrong_key_is_401(db):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Api-Key vlm_deadbeef0000.nope")

    response = api.post(POSTS, {"text": "x"}, format="json")

    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")
    assert Post.objects.count() == 0


def test_key_of_a_deactivated_or_revoked_client_is_401(api, client_user):  # type: ignore[no-untyped-def]
    from moderation.models import ApiKey
    from moderation.services.apikeys import apikey_revoke

    assert api.post(POSTS, {"text": "x"}, format="json").status_code == 202
    client_user.is_active = False
    client_user.save(update_fields=["is_active"])
    assert api.post(POSTS, {"text": "y"}, format="json").status_code == 401
    client_user.is_active = True
    client_user.save(update_fields=["is_active"])
    apikey_revoke(key=ApiKey.objects.get(user=client_user))
    assert api.post(POSTS, {"text": "z"}, format="json").status_code == 401
    assert Post.objects.count() == 1


def test_authenticated_client_is_the_keys_user(client_user):  # type: ignore[no-untyped-def]
    from moderation.services.apikeys import apikey_authenticate, apikey_create

    key, raw = apikey_create(user=client_user, name="ci")
    found = apikey_authenticate(raw_key=raw)
    assert found is not None and found.pk == key.pk and found.name == "ci"
    # Only the id and is_active come with the key; the rest of the user loads when read.
    assert found.user == client_user and found.user.username == "acme"
    assert apikey_authenticate(raw_key=raw[:-1] + ("x" if raw[-1] != "x" else "y")) is None
    assert apikey_authenticate(raw_key="vlm_nosuchprefix.secret") is None


def test_other_clients_post_is_404(api, other_user):  # type: ignore[no-untyped-def]
    foreign = PostFactory(client=other_user)

    response = api.get(f"{POSTS}{foreign.pk}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unknown_post_is_404(api):  # type: ignore[no-untyped-def]
    assert api.get(f"{POSTS}{uuid.uuid4()}/").status_code == 404


def test_list_shows_only_own_posts_with_filters_and_cursor(api, client_user, other_user):  # type: ignore[no-untyped-def]
    own = [PostFactory(client=client_user) for _ in range(3)]
    PostFactory(client=other_user)
    Post.objects.filter(pk=own[0].pk).update(state="allowed")

    page = api.get(POSTS, {"page_size": 2}).json()
    rest = api.get(page["next"]).json()
    allowed = api.get(POSTS, {"status": "allowed"}).json()

    ids = [p["id"] for p in page["results"] + rest["results"]]
    assert sorted(ids) == sorted(str(p.pk) for p in own)
    assert [p["id"] for p in allowed["results"]] == [str(own[0].pk)]


def test_list_rejects_unknown_status(api):  # type: ignore[no-untyped-def]
    response = api.get(POSTS, {"status": "bogus"})

    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_schema_and_docs_are_served(client, db):  # type: ignore[no-untyped-def]
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert "/api/v1/posts/" in schema.json()["paths"]
    assert docs.status_code == 200


def test_healthz(client):  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_database_and_broker(client, db, settings):  # type: ignore[no-untyped-def]
    body = client.get("/readyz").json()

    assert body["checks"]["database"] is True
    assert set(body["checks"]) == {"database", "broker"}


def test_schema_generates_without_warnings():  # type: ignore[no-untyped-def]
    from django.core.management import call_command
    from io import StringIO

    call_command("spectacular", "--urlconf", "moderation.urls", "--validate", "--fail-on-warn", stdout=StringIO())


def test_reviewed_posts_carry_the_reviewers_verdict(api, client_user):  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from moderation.services.reviews import review_decide
    from tests.factories import UserFactory, post_in_review

    reviewer = UserFactory(username="rev")
    posts = [post_in_review(client=client_user) for _ in range(6)]
    review_decide(post=posts[0], reviewer=reviewer, verdict="violating", category="hate", reason="slur")
    review_decide(post=posts[1], reviewer=reviewer, verdict="not_violating")

    detail = api.get(f"{POSTS}{posts[0].pk}/").json()
    assert detail["status"] == "reviewed"
    assert (detail["review"]["verdict"], detail["review"]["category"]) == ("violating", "hate")
    assert detail["review"]["decided_at"].endswith("Z")
    assert api.get(f"{POSTS}{posts[2].pk}/").json()["review"] is None  # still in review
    with CaptureQueriesContext(connection) as two_reviewed:
        listed = {p["id"]: p["review"] for p in api.get(POSTS).json()["results"]}
    assert listed[str(posts[1].pk)]["verdict"] == "not_violating" and listed[str(posts[5].pk)] is None
    for post in posts[2:]:
        review_decide(post=post, reviewer=reviewer, verdict="not_violating")
    with CaptureQueriesContext(connection) as six_reviewed:
        assert all(p["review"] for p in api.get(POSTS).json()["results"])
    assert len(six_reviewed) == len(two_reviewed)  # the page's outcomes come in one query
