"""factory_boy factories for the app's models, and image bytes for uploads."""
from __future__ import annotations

import io
import uuid

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from moderation.models import Analysis, Post, PostState
from moderation.services.policies import policy_active


def drawn_meme(seed: int) -> Image.Image:
    """A meme-like picture: a textured background (PDQ quality 100) with a face and a caption bar drawn on it."""
    import numpy as np
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
        (480, 360), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    draw.ellipse((140, 80, 340, 280), fill=(250, 220, 40), outline=(0, 0, 0), width=6)
    draw.rectangle((0, 300, 480, 360), fill=(255, 255, 255))
    draw.text((20, 315), "WHEN THE WORKER FINALLY STARTS", fill=(0, 0, 0), font_size=28)
    return image


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


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


class AnalysisFactory(factory.django.DjangoModelFactory):
    """An engine verdict of ``review`` on the active policy, with one grounding box."""

    class Meta:
        model = Analysis

    post = factory.SubFactory(PostFactory)
    claim_token = factory.LazyFunction(uuid.uuid4)
    policy = factory.LazyFunction(lambda: policy_active())
    model_version = "tiny:test"
    scores = factory.LazyFunction(lambda: {"hate": 0.72, "extremism": 0.31, "violence": 0.05})
    decision = "review"
    top_category = "hate"
    risk = 0.648
    explanation = factory.LazyFunction(lambda: {
        "summary": "The post was sent to review. Signals above threshold: Hate 0.72.",
        "groundings": [{"phrase": "racist symbol", "box": [64.0, 48.0, 320.0, 240.0], "score": 0.81}],
        "answers": [{"question": "Is there a weapon?", "answer": "no"}],
        "caption": "a red square", "ocr_text": "SAMPLE TEXT", "rationale": None, "nearest_examples": []})


def post_in_review(*, priority: float = 0.5, image_size: tuple[int, int] | None = None, **fields: object) -> Post:
    """A post in ``needs_review`` with a current analysis (and a stored JPEG when ``image_size`` is given)."""
    post = PostFactory(**{"state": PostState.NEEDS_REVIEW, "review_priority": priority, **fields})
    if image_size:
        post.image.save("upload.jpg", ContentFile(image_bytes("JPEG", size=image_size)), save=False)
        post.image_width, post.image_height, post.image_format = image_size[0], image_size[1], "JPEG"
    post.current_analysis = AnalysisFactory(post=post, risk=priority)
    post.save()
    return post


def staff_member(username: str, group: str):  # type: ignore[no-untyped-def]
    """A staff user in one of the groups `moderation_setup_groups` makes."""
    from django.contrib.auth.models import Group

    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user
