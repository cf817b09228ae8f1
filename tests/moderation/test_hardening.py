"""Input and access hardening: upload attacks, body caps, throttling, retention, media headers."""
from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from moderation.models import Analysis, Post, PostEvent
from moderation.services.retention import post_content_purge
from tests.factories import PostFactory, image_bytes

pytestmark = pytest.mark.django_db
POSTS = "/api/v1/posts/"


def upload(data: bytes, name: str = "a.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def png_with_html_chunk() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<html><script>alert(document.cookie)</script></html>")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def animated_gif(frames: int) -> bytes:
    images = [Image.new("RGB", (8, 8), (i * 20 % 256, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=20)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (png_with_html_chunk(), "poly.png", "image_polyglot"),
        (image_bytes("JPEG"), "lying.png", None),  # a lying extension is fine: content decides, re-encoded
        (image_bytes("PNG"), "lying.gif", None),
        (animated_gif(12), "anim.gif", "image_too_many_frames"),
        (animated_gif(3), "ok.gif", None),
    ],
    ids=["png-html-polyglot", "jpeg-named-png", "png-named-gif", "too-many-frames", "few-frames"],
)
def test_upload_attacks(api, settings, data, name, code):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_IMAGE_FRAMES": 10}

    response = api.post(POSTS, {"image": upload(data, name)}, format="multipart")

    if code is None:
        assert response.status_code == 202
        assert Image.open(Post.objects.get().image.path).format == "JPEG"
    else:
        assert (response.status_code, response.json()["code"]) == (400, code)
        assert Post.objects.count() == 0


def test_oversized_body_is_refused_before_parsing(api, settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "MAX_UPLOAD_BYTES": 1024}
    big = b"\0" * (400 * 1024)

    response = api.post(POSTS, {"image": upload(big)}, format="multipart")

    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")
    assert Post.objects.count() == 0


def test_more_files_than_allowed(api):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"image": [upload(image_bytes()), upload(image_bytes())]}, format="multipart")
    other_field = api.post(POSTS, {"image": upload(image_bytes()), "extra": upload(image_bytes())},
                           format="multipart")

    assert (response.status_code, response.json()["code"]) == (400, "too_many_files")
    assert (other_field.status_code, other_field.json()["code"]) == (400, "too_many_files")
    assert Post.objects.count() == 0


def test_invalid_utf8_text_in_form_is_refused(api):  # type: ignore[no-untyped-def]
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n").encode() + \
        b"caf\xe9 \xff\xfe" + f"\r\n--{boundary}--\r\n".encode()

    response = api.generic("POST", POSTS, body, content_type=f"multipart/form-data; boundary={boundary}")

    assert (response.status_code, response.json()["code"]) == (400, "text_invalid")
    assert Post.objects.count() == 0


def test_invalid_utf8_json_is_refused(api):  # type: ignore[no-untyped-def]
    response = api.generic("POST", POSTS, b'{"text": "caf\xe9"}', content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (400, "parse_error")
    assert Post.objects.count() == 0


def test_throttling_per_client_with_retry_after(api, other_api, settings):  # type: ignore[no-untyped-def]
    cache.clear()
    settings.MODERATION = {**settings.MODERATION, "THROTTLE_RATE": "3/min"}

    codes = [api.get(POSTS).status_code for _ in range(4)]
    throttled = api.get(POSTS)

    assert codes == [200, 200, 200, 429]
    assert throttled.json()["code"] == "throttled" and int(throttled["Retry-After"]) > 0
    assert other_api.get(POSTS).status_code == 200  # another client has its own bucket
    cache.clear()


def test_retention_deletes_content_keeps_verdicts(settings, tmp_path):  # type: ignore[no-untyped-def]
    from django.core.files.base import ContentFile

    old, recent = PostFactory(external_id="e1", metadata={"user": "u1"}), PostFactory()
    old.image.save("x.jpg", ContentFile(image_bytes("JPEG")), save=True)
    image_path = old.image.path
    Post.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    analysis = Analysis.objects.create(post=old, claim_token=old.pk, policy_id=1, model_version="m", scores={"hate": 0.1},
                                       decision="allow", image_embedding=b"\0" * 8)

    assert post_content_purge(days=30, mode="anonymize") == 1
    assert post_content_purge(days=30, mode="anonymize") == 0

    old.refresh_from_db()
    assert (old.text, old.image.name, old.external_id, old.metadata) == ("", "", None, {})
    assert old.content_deleted_at is not None
    assert not os.path.exists(image_path)
    assert Analysis.objects.get(pk=analysis.pk).image_embedding == b"\0" * 8
    assert Post.objects.get(pk=recent.pk).text != ""
    assert PostEvent.objects.filter(post=old, actor="retention").count() == 1


def test_retention_command_uses_setting(settings):  # type: ignore[no-untyped-def]
    settings.MODERATION = {**settings.MODERATION, "RETENTION_DAYS": 7}
    post = PostFactory()
    Post.objects.filter(pk=post.pk).update(created_at=timezone.now() - timedelta(days=8))
    out = io.StringIO()

    call_command("moderation_purge_content", stdout=out)

    assert out.getvalue().strip() == "Purged the content of 1 posts."
    assert Post.objects.get(pk=post.pk).text == ""


def test_retention_off_by_default():  # type: ignore[no-untyped-def]
    PostFactory(created_at=timezone.now() - timedelta(days=3650))

    assert post_content_purge() == 0


def test_nul_in_metadata_is_refused_on_every_database(api):  # type: ignore[no-untyped-def]
    response = api.post(POSTS, {"text": "x", "metadata": {"k\u0000": "v\u0000"}}, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "metadata_invalid")
    assert Post.objects.count() == 0
