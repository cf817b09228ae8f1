"""API keys: created once (the secret shown once), stored as SHA-256, revoked at once."""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections
from django.utils import timezone

from moderation.models import ApiKey

KEY_SCHEME = "vlm"


def _hash(secret: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


def apikey_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiKey, str]:
    """Create a key for ``user``; returns the row and the raw key, which is not stored."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name, prefix=prefix, hashed_key=_hash(secret))
    return key, f"{KEY_SCHEME}_{prefix}.{secret}"


def apikey_create_for_username(*, username: str, name: str = "") -> tuple[ApiKey, str, bool]:
    """Create the user if needed, then a key; returns (key, raw key, user created)."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    key, raw = apikey_create(user=user, name=name)
    return key, raw, created


def apikey_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None. Constant-time comparison of the hash."""
    scheme, _, rest = raw_key.partition("_")
    prefix, _, secret = rest.partition(".")
    if scheme != KEY_SCHEME or not prefix or not secret:
        return None
    key = _active_key_find(prefix=prefix)
    if key is None or not hmac.compare_digest(key.hashed_key, _hash(secret)):
        return None
    if not key.user.is_active:
        return None
    return key


def _active_key_find(*, prefix: str) -> ApiKey | None:
    """The unrevoked key with ``prefix`` and its user's ``is_active``, in one written-out query.

    Every API request runs this; compiling the equivalent ``select_related`` query took the ORM
    three times as long as running it. The user comes back with only its primary key and
    ``is_active`` loaded; any other field loads on first use.
    """
    user_model = get_user_model()
    sql, has_active_field = _active_key_sql(ApiKey.objects.db)
    fields = [user_model._meta.pk.attname] + (["is_active"] if has_active_field else [])
    for key in ApiKey.objects.raw(sql, [prefix]):
        values = [key.user_id] + ([bool(key.user_is_active)] if has_active_field else [])
        key.user = user_model.from_db(key._state.db, fields, values)
        return key
    return None


@functools.cache
def _active_key_sql(alias: str) -> tuple[str, bool]:
    """The lookup's SQL for database ``alias``, and whether the user model has an ``is_active``
    field; both are fixed for the life of the process, so they are built once."""
    user_model = get_user_model()
    qn = connections[alias].ops.quote_name
    has_active_field = any(f.name == "is_active" for f in user_model._meta.concrete_fields)
    active = f"u.{qn('is_active')}" if has_active_field else "1"
    sql = (f"SELECT k.*, {active} AS user_is_active FROM {qn(ApiKey._meta.db_table)} k "
           f"JOIN {qn(user_model._meta.db_table)} u ON u.{qn(user_model._meta.pk.column)} = k.{qn('user_id')} "
           f"WHERE k.{qn('prefix')} = %s AND k.{qn('revoked_at')} IS NULL")
    return sql, has_active_field


def apikey_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
