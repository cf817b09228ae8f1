"""Idempotency keys: the first response to a key is stored and replayed to every retry.

A key is handled in ONE transaction with the work it guards: the caller takes the key with
``idempotency_begin``, does the work (the post and its event), and stores the response with
``idempotency_complete`` before the transaction commits. So a key is either complete, with
its response, or absent; a request that dies at any step leaves nothing behind and its
retry runs afresh. While the first request is alive its database session holds the key:
on PostgreSQL a transaction-level advisory lock (a retry meanwhile is answered ``409``),
elsewhere the database's write lock (a retry waits for it). A dead process's session ends
and its locks go with it; on PostgreSQL ``idle_in_transaction_session_timeout`` also ends a
session whose web host vanished without closing its connection.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from moderation.conf import moderation_settings
from moderation.models import IdempotencyRecord
from moderation.errors import ServiceError

MAX_KEY_LENGTH = 255
# Seconds a request holding a key may sit idle inside its transaction before PostgreSQL ends
# its session: the lease that frees a key whose web host disappeared without a TCP reset.
IDLE_LEASE_SECONDS = 60
# First half of the two-integer advisory lock key: keeps these locks apart from other users'.
ADVISORY_NAMESPACE = 0x1DE3
# Crash drills (tests only): when set, a request whose key is "crash-drill:<step>" pauses at
# that step once, so that the drill can kill the process there. Unset in every real deployment.
CRASH_DRILL_DIR_ENV = "MODERATION_CRASH_DRILL_DIR"
CRASH_DRILL_PAUSE_SECONDS = 300


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


@dataclass(frozen=True)
class _Found:
    request_hash: str
    status: int | None
    body: Any
    created_at: datetime


def idempotency_request_hash(*, fields: Mapping[str, Any], file_bytes: bytes | None) -> str:
    """A digest of what was asked: the form fields and the uploaded bytes."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    digest.update(hashlib.sha256(file_bytes or b"").digest())
    return digest.hexdigest()


def idempotency_atomic() -> transaction.Atomic:
    """The transaction a keyed request runs in, from ``idempotency_begin`` to ``idempotency_complete``."""
    return transaction.atomic(using=router.db_for_write(IdempotencyRecord))


def idempotency_begin(*, client: AbstractBaseUser, key: str, request_hash: str) -> StoredResponse | None:
    """Take ``key`` for this request's transaction, or return the response stored for it earlier.

    An expired record, or one left without a response by an older release, is deleted: the
    key is then new.

    Raises:
        ServiceError: 400 for an invalid key, 422 when the key was used with a different
            request, 409 while another live request holds the key (PostgreSQL).
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ServiceError("idempotency_key_invalid", f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} characters.")
    using = router.db_for_write(IdempotencyRecord)
    if not connections[using].in_atomic_block:
        raise RuntimeError("idempotency_begin must run inside idempotency_atomic()")
    if connections[using].vendor == "postgresql":
        found = _postgresql_lock_and_find(client=client, key=key, using=using)
    else:
        found = _write_lock_and_find(client=client, key=key, using=using)
    if found is None or found.status is None or found.created_at < _expired_before():
        if found is not None:  # stale: treated as a new key
            IdempotencyRecord.objects.using(using).filter(client=client, key=key).delete()
        return None
    if found.request_hash != request_hash:
        raise ServiceError("idempotency_key_reused",
                           "This Idempotency-Key was used with a different request.", status=422)
    return StoredResponse(status=found.status, body=found.body)


def idempotency_complete(*, client: AbstractBaseUser, key: str, request_hash: str, status: int, body: Any) -> None:
    """Store the response to ``key``; it commits, or rolls back, with the work it answers.

    Raises:
        ServiceError: 409 when a concurrent request completed the key first (its work is
            kept and this transaction must roll back; the retry replays its response).
    """
    using = router.db_for_write(IdempotencyRecord)
    try:
        IdempotencyRecord.objects.using(using).create(client=client, key=key, request_hash=request_hash,
                                                      response_status=status, response_body=body)
    except IntegrityError:
        raise ServiceError("idempotency_in_progress",
                           "A request with this Idempotency-Key is still in progress; retry later.", status=409)


def idempotency_expired_delete() -> int:
    """Delete the records older than ``IDEMPOTENCY_KEY_TTL``; returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=_expired_before()).delete()
    return deleted


def idempotency_crash_point(*, step: str, key: str) -> None:
    """Crash drills only: pause once at ``step`` so the drill can kill this process there.

    Inert unless ``MODERATION_CRASH_DRILL_DIR`` is set and ``key`` is ``crash-drill:<step>``;
    the pause is announced by a file named ``step`` holding this process's id.
    """
    directory = os.environ.get(CRASH_DRILL_DIR_ENV)
    if not directory or key != f"crash-drill:{step}":
        return
    try:
        fd = os.open(Path(directory) / step, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # paused here once already: the retry goes on
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(CRASH_DRILL_PAUSE_SECONDS)


def _expired_before() -> datetime:
    return timezone.now() - timedelta(seconds=moderation_settings.IDEMPOTENCY_KEY_TTL)


def _postgresql_lock_and_find(*, client: AbstractBaseUser, key: str, using: str) -> _Found | None:
    """One round trip: try the key's advisory lock, arm the idle lease, read the record.

    The read's snapshot is taken before the lock, so a request that completed the key in
    between is missed; ``idempotency_complete`` then meets its row and answers 409.
    """
    table = IdempotencyRecord._meta.db_table
    lock_key = int.from_bytes(hashlib.sha256(f"{client.pk}:{key}".encode()).digest()[:4], "big", signed=True)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s),"
            " set_config('idle_in_transaction_session_timeout', %s, true),"
            " r.request_hash, r.response_status, r.response_body, r.created_at"
            f" FROM (SELECT 1) AS one LEFT JOIN {table} AS r ON r.client_id = %s AND r.key = %s",
            [ADVISORY_NAMESPACE, lock_key, f"{IDLE_LEASE_SECONDS}s", client.pk, key])
        locked, _, request_hash, status, body, created_at = cursor.fetchone()
    if not locked:
        raise ServiceError("idempotency_in_progress",
                           "A request with this Idempotency-Key is still in progress; retry later.", status=409)
    if request_hash is None:
        return None
    field = IdempotencyRecord._meta.get_field("response_body")
    return _Found(request_hash=request_hash, status=status, created_at=created_at,
                  body=field.from_db_value(body, None, connections[using]))


def _write_lock_and_find(*, client: AbstractBaseUser, key: str, using: str) -> _Found | None:
    # A write first: SQLite takes its database lock now and keeps it until commit, so a retry
    # waits behind this request instead of racing it (and a dead process's lock is freed).
    records = IdempotencyRecord.objects.using(using).filter(client=client, key=key)
    records.filter(Q(response_status__isnull=True) | Q(created_at__lt=_expired_before())).delete()
    record = records.first()
    if record is None:
        return None
    return _Found(request_hash=record.request_hash, status=record.response_status, body=record.response_body,
                  created_at=record.created_at)
