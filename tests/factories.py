"""factory_boy factories for the app's models, and image bytes for uploads."""
from __future__ import annotations

import io

import factory
from django.contrib.auth import get_user_model
from PIL import Image

from moderation.models import Post


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30),
                **save_kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"client{n}")


class PostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Post

    client = factory.SubFactory(UserFactory)
    text = factory.Sequence(lambda n: f"post number {n}")
