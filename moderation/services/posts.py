"""Post services: validate an upload and submit a post, idempotently per external id."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction

from moderation.conf import moderation_settings
from moderation.dispatch import analysis_wakeup
from moderation.models import Post, PostEvent, PostState
from moderation.services.errors import ServiceError
from vlm_engine.imaging import ImageRejected, image_decode, image_reencode

TOO_LARGE_CODES = {"image_too_large"}
# Browsers sniff the first bytes of a response; markup there makes a "PNG" renderable as HTML.
MARKUP_SNIFF_BYTES = 1024
MARKUP_MARKERS = (b"<html", b"<script", b"<svg", b"<!doctype", b"<iframe", b"<body", b"<head", b"<?xml")


@dataclass(frozen=True)
class ValidatedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    format: str


def post_image_validate(*, upload: UploadedFile) -> ValidatedImage:
    """Decode under the configured caps and re-encode (EXIF dropped, orientation applied)."""
    limit = moderation_settings.MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise ServiceError("image_too_large", f"The image exceeds {limit} bytes.", status=413)
    data = upload.read(limit + 1)
    try:
        decoded = image_decode(data, allowed_formats=moderation_settings.ALLOWED_IMAGE_FORMATS,
                               max_pixels=moderation_settings.MAX_IMAGE_PIXELS, max_bytes=limit)
    except ImageRejected as exc:
        raise ServiceError(exc.code, exc.message, status=413 if exc.code in TOO_LARGE_CODES else 400)
    _markup_check(data)  # a real image that also carries markup: a polyglot
    if decoded.frames > moderation_settings.MAX_IMAGE_FRAMES:
        raise ServiceError("image_too_many_frames",
                           f"The image has {decoded.frames} frames; at most {moderation_settings.MAX_IMAGE_FRAMES}.")
    return ValidatedImage(data=image_reencode(decoded), sha256=hashlib.sha256(data).hexdigest(),
                          width=decoded.width, height=decoded.height, format=decoded.format)


def _markup_check(data: bytes) -> None:
    head = data[:MARKUP_SNIFF_BYTES].lower()
    if any(marker in head for marker in MARKUP_MARKERS):
        raise ServiceError("image_polyglot", "The file carries HTML or XML markup; it is refused.")


def post_text_validate(*, text: str) -> str:
    limit = moderation_settings.MAX_TEXT_LENGTH
    if len(text) > limit:
        raise ServiceError("text_too_long", f"The text exceeds {limit} characters.")
    if "\x00" in text:
        raise ServiceError("text_invalid", "The text contains NUL characters.")
    if "\ufffd" in text:
        # Form fields are decoded with errors="replace": U+FFFD means the bytes were not UTF-8.
        raise ServiceError("text_invalid", "The text is not valid UTF-8.")
    return text


def post_metadata_validate(*, metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise ServiceError("metadata_invalid", "metadata must be a JSON object.")
    encoded = json.dumps(metadata)
    if "\\u0000" in encoded:
        # PostgreSQL's jsonb cannot hold NUL; refuse it the same way on every database.
        raise ServiceError("metadata_invalid", "metadata must not contain NUL characters.")
    if len(encoded) > moderation_settings.MAX_METADATA_BYTES:
        raise ServiceError("metadata_too_large",
                           f"metadata exceeds {moderation_settings.MAX_METADATA_BYTES} bytes.")
    return metadata


def post_submit(*, client: AbstractBaseUser, image: UploadedFile | None = None, text: str = "",
                external_id: str | None = None, metadata: Any = None) -> tuple[Post, bool]:
    """Store a post in ``queued`` and wake a worker after commit.

    Returns ``(post, created)``; the same ``external_id`` from the same client returns the
    existing post with ``created=False`` and stores nothing.
    """
    if external_id and (existing := Post.objects.filter(client=client, external_id=external_id).first()):
        return existing, False
    text = post_text_validate(text=text)
    metadata = post_metadata_validate(metadata={} if metadata is None else metadata)
    if image is None and not text.strip():
        raise ServiceError("post_empty", "A post needs an image, a text, or both.")
    validated = post_image_validate(upload=image) if image is not None else None
    post = Post(client=client, external_id=external_id or None, text=text, metadata=metadata)
    if validated:
        post.image_sha256, post.image_format = validated.sha256, validated.format
        post.image_width, post.image_height = validated.width, validated.height
        post.image.save("upload.jpg", ContentFile(validated.data), save=False)
    return _post_insert(post=post)


def _post_insert(*, post: Post) -> tuple[Post, bool]:
    try:
        with transaction.atomic():
            post.save(force_insert=True)
            PostEvent.objects.create(post=post, to_state=PostState.QUEUED, actor=f"client:{post.client_id}")
            analysis_wakeup()
    except IntegrityError:
        # A concurrent submit with the same external_id won the race: answer with its post.
        if post.image:
            post.image.delete(save=False)
        existing = Post.objects.filter(client=post.client, external_id=post.external_id).first()
        if existing is None:
            raise
        return existing, False
    return post, True
