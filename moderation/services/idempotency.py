"""Idempotency keys: the first response to a key is stored and replayed to every retry."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from moderation.models import IdempotencyRecord
from moderation.services.errors import ServiceError

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


def idempotency_request_hash(*, fields: Mapping[str, Any], file_bytes: bytes | None) -> str:
    """A digest of what was asked: the form fields and the uploaded bytes."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    digest.update(hashlib.sha256(file_bytes or b"").digest())
    return digest.hexdigest()


def idempotency_begin(*, client: AbstractBaseUser, key: str, request_hash: str) -> StoredResponse | None:
    """Reserve ``key`` for this request, or return the response stored for it earlier.

    Raises:
        ServiceError: 422 when the key was used with a different request, 409 while the
            first request with this key is still being handled.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ServiceError("idempotency_key_invalid", f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters.")
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(client=client, key=key, request_hash=request_hash)
        return None
    except IntegrityError:
        record = IdempotencyRecord.objects.get(client=client, key=key)
    if record.request_hash != request_hash:
        raise ServiceError("idempotency_key_reused",
                           "This Idempotency-Key was used with a different request.", status=422)
    if record.response_status is None:
        raise ServiceError("idempotency_in_progress",
                           "A request with this Idempotency-Key is still in progress; retry later.", status=409)
    return StoredResponse(status=record.response_status, body=record.response_body)


def idempotency_complete(*, client: AbstractBaseUser, key: str, status: int, body: Any) -> None:
    IdempotencyRecord.objects.filter(client=client, key=key).update(response_status=status, response_body=body)


def idempotency_abandon(*, client: AbstractBaseUser, key: str) -> None:
    """Forget a reservation whose request failed unexpectedly, so that a retry can run."""
    IdempotencyRecord.objects.filter(client=client, key=key, response_status__isnull=True).delete()
