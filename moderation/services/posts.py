"""Post services: validate an upload and submit a post, idempotently per external id."""
from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.sql import InsertQuery

from moderation.conf import moderation_settings
from moderation.models import Post
from moderation.errors import ServiceError
from moderation.services.lifecycle import post_submitted_effects, post_submitted_event
from vlm_engine.imaging import ImageRejected, image_decode, image_reencode

TOO_LARGE_CODES = {"image_too_large"}
# Deeper metadata is refused: nothing real needs it, and each level costs stack in every JSON walker.
MAX_METADATA_DEPTH = 32
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
    if json_nesting_exceeds(metadata, limit=MAX_METADATA_DEPTH):
        raise ServiceError("metadata_invalid", f"metadata must not nest deeper than {MAX_METADATA_DEPTH} levels.")
    encoded = json.dumps(metadata)
    if "\\u0000" in encoded:
        # PostgreSQL's jsonb cannot hold NUL; refuse it the same way on every database.
        raise ServiceError("metadata_invalid", "metadata must not contain NUL characters.")
    if len(encoded) > moderation_settings.MAX_METADATA_BYTES:
        raise ServiceError("metadata_too_large",
                           f"metadata exceeds {moderation_settings.MAX_METADATA_BYTES} bytes.")
    return metadata


def json_nesting_exceeds(value: Any, *, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


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
    event = post_submitted_event(post=post)
    using = router.db_for_write(Post, instance=post)
    try:
        if connections[using].vendor == "postgresql":
            # Only an external_id can collide; a savepoint then keeps the caller's transaction
            # (the Idempotency-Key path) usable after the IntegrityError. Without one it costs
            # two round trips for nothing.
            savepoint = post.external_id and connections[using].in_atomic_block
            with transaction.atomic(using=using) if savepoint else nullcontext():
                _rows_insert_in_one_statement(post, event, using=using)
        else:
            with transaction.atomic(using=using):
                post.save(force_insert=True, using=using)
                event.save(force_insert=True, using=using)
        post_submitted_effects()  # a wake-up, sent once the caller's transaction, if any, commits
    except IntegrityError:
        # A concurrent submit with the same external_id won the race: answer with its post.
        if post.image:
            post.image.delete(save=False)
        existing = Post.objects.filter(client=post.client, external_id=post.external_id).first()
        if existing is None:
            raise
        return existing, False
    return post, True


def _rows_insert_in_one_statement(first: Model, second: Model, *, using: str) -> None:
    """INSERT two new rows with one PostgreSQL statement (a data-modifying WITH).

    A statement is atomic on its own, so in autocommit this is one round trip where a
    transaction takes four (BEGIN, INSERT, INSERT, COMMIT); at hundreds of submits a second
    those round trips were a third of the web process's time. The SQL is the ORM's own
    INSERT for each row. Like ``bulk_create``, this sends no ``pre_save``/``post_save``
    signals; ``first`` must have its primary key set (a UUID default), and ``second`` gets
    no primary key back.
    """
    connection = connections[using]
    (first_sql, first_params), (second_sql, second_params) = (_insert_sql(row, connection)
                                                              for row in (first, second))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH first_row AS ({first_sql}) {second_sql}", (*first_params, *second_params))
    first._state.adding, first._state.db = False, using


def _insert_sql(row: Model, connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
    meta = row._meta
    fields = [f for f in meta.local_concrete_fields
              if not f.generated and not (f is meta.auto_field and row.pk is None)]
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)
