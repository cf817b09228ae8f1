"""API keys: created once (the secret shown once), stored as SHA-256, revoked at once."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
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
    key = ApiKey.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.hashed_key, _hash(secret)):
        return None
    if not key.user.is_active:
        return None
    return key


def apikey_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
