"""Derived images: the small thumbnail the review queue shows, made once per post."""
from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.db.models.fields.files import FieldFile
from PIL import Image

from moderation.models import Post
from moderation.errors import NotFound

# Twice the queue's 96×72 cell, for high-density screens; a few kilobytes instead of megabytes.
THUMBNAIL_BOX = (192, 144)
THUMBNAIL_QUALITY = 80


def post_thumbnail_ensure(*, post: Post) -> FieldFile:
    """The post's thumbnail, made from its stored image on first use and kept.

    Two requests racing to make it both write a file; the first to record its name wins and
    the other's file is removed, so the post keeps exactly one.

    Raises:
        NotFound: the stored image does not decode.
    """
    if post.image_thumbnail:
        return post.image_thumbnail
    with post.image.open("rb") as handle:
        try:
            data = thumbnail_bytes(handle.read())
        except (OSError, ValueError, Image.DecompressionBombError):
            # The stored file no longer decodes (damaged on disk): nothing to show, not a server error.
            raise NotFound("not_found", "The image cannot be read.")
    post.image_thumbnail.save("thumbnail.jpg", ContentFile(data), save=False)
    recorded = Post.objects.filter(pk=post.pk, image_thumbnail="").update(image_thumbnail=post.image_thumbnail.name)
    if not recorded:
        post.image_thumbnail.delete(save=False)
        post.refresh_from_db(fields=["image_thumbnail"])
    return post.image_thumbnail


def thumbnail_bytes(data: bytes, *, box: tuple[int, int] = THUMBNAIL_BOX) -> bytes:
    """A JPEG no larger than ``box``, aspect kept. Stored images are already re-encoded JPEGs, so
    the decoder may skip to a reduced scale (``draft``) instead of decoding every pixel."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", box)
        small = image.convert("RGB")
    small.thumbnail(box)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()
