"""Post images: only through the permission-checked view, for the owner's key or staff allowed to view posts."""
from __future__ import annotations

import importlib
import io
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import Resolver404, resolve, reverse
from PIL import Image

from moderation.models import Post
from moderation.services.posts import post_submit
from moderation.services.retention import post_content_purge
from tests.factories import UserFactory, image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(client_user) -> Post:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile("p.png", image_bytes("PNG", size=(1600, 1200)), "image/png")
    return post_submit(client=client_user, text="a post", image=upload)[0]


def _staff(client, group: str | None):  # type: ignore[no-untyped-def]
    call_command("moderation_setup_groups", stdout=StringIO())
    user = UserFactory(username=f"staff-{group}", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


def _body(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content)


def test_the_owner_gets_the_image_with_its_key(api, post):  # type: ignore[no-untyped-def]
    response = api.get(reverse("moderation:post-image", args=[post.pk]))

    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert Image.open(io.BytesIO(_body(response))).size == (1600, 1200)


@pytest.mark.parametrize("name", ["post-image", "post-thumbnail"])
def test_anonymous_and_other_clients_get_404(client, other_api, post, name):  # type: ignore[no-untyped-def]
    url = reverse(f"moderation:{name}", args=[post.pk])

    anonymous, other = client.get(url), other_api.get(url)

    assert (anonymous.status_code, anonymous.json()["code"]) == (404, "not_found")
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
    assert Post.objects.get(pk=post.pk).image_thumbnail == ""  # nothing made for them


def test_staff_without_the_view_permission_get_404_and_reviewers_the_image(client, post):  # type: ignore[no-untyped-def]
    url = reverse("moderation:post-image", args=[post.pk])

    assert _staff(client, None).get(url).status_code == 404
    reviewer = _staff(client, "Reviewer").get(url)

    assert reviewer.status_code == 200 and _body(reviewer)[:2] == b"\xff\xd8"


def test_thumbnail_is_small_and_made_once(client, post):  # type: ignore[no-untyped-def]
    reviewer = _staff(client, "Reviewer")
    url = reverse("moderation:post-thumbnail", args=[post.pk])

    first = _body(reviewer.get(url))
    name = Post.objects.get(pk=post.pk).image_thumbnail.name
    second = _body(reviewer.get(url))

    assert Image.open(io.BytesIO(first)).size == (192, 144)
    assert len(first) < 10_000 and first == second
    assert name.startswith("thumbnails/") and Post.objects.get(pk=post.pk).image_thumbnail.name == name


def test_the_api_names_the_image_url(api, post):  # type: ignore[no-untyped-def]
    body = api.get(reverse("moderation:post-detail", args=[post.pk])).json()

    assert body["image"]["url"] == f"http://testserver/api/v1/posts/{post.pk}/image/"


def test_purged_content_takes_the_thumbnail_with_it(client, post, settings):  # type: ignore[no-untyped-def]
    reviewer = _staff(client, "Reviewer")
    _body(reviewer.get(reverse("moderation:post-thumbnail", args=[post.pk])))
    thumbnail = settings.MEDIA_ROOT / Post.objects.get(pk=post.pk).image_thumbnail.name
    assert thumbnail.exists()
    Post.objects.filter(pk=post.pk).update(created_at=post.created_at.replace(year=2000))

    assert post_content_purge(days=30) == 1

    assert not thumbnail.exists()
    assert reviewer.get(reverse("moderation:post-image", args=[post.pk])).status_code == 404


def test_the_demo_site_serves_no_media_even_with_debug(settings, post):  # type: ignore[no-untyped-def]
    settings.DEBUG = True
    import demo.urls

    urls = importlib.reload(demo.urls)
    try:
        with pytest.raises(Resolver404):
            resolve(f"/{settings.MEDIA_URL}{post.image.name}", urlconf=urls)
    finally:
        settings.DEBUG = False
        importlib.reload(demo.urls)


def test_a_damaged_stored_image_has_no_thumbnail_and_no_server_error(client, post):  # type: ignore[no-untyped-def]
    reviewer = _staff(client, "Reviewer")
    with open(post.image.path, "wb") as handle:
        handle.write(b"no longer a jpeg")

    response = reviewer.get(reverse("moderation:post-thumbnail", args=[post.pk]))

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert Post.objects.get(pk=post.pk).image_thumbnail == ""
