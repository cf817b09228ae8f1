"""Management commands: moderation_apikey."""
from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from moderation.models import ApiKey
from moderation.services.apikeys import apikey_authenticate, apikey_revoke

pytestmark = pytest.mark.django_db


def test_apikey_creates_user_and_prints_key_last():  # type: ignore[no-untyped-def]
    out = StringIO()

    call_command("moderation_apikey", "alice", stdout=out, stderr=StringIO())

    raw = out.getvalue().strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert get_user_model().objects.get(username="alice") == key.user
    assert raw.startswith(f"vlm_{key.prefix}.")
    assert raw not in key.hashed_key and key.hashed_key == hashlib.sha256(raw.split(".", 1)[1].encode()).hexdigest()
    assert apikey_authenticate(raw_key=raw) == key


def test_apikey_for_existing_user_adds_a_key():  # type: ignore[no-untyped-def]
    get_user_model().objects.create(username="bob")

    call_command("moderation_apikey", "bob", stdout=StringIO(), stderr=StringIO())
    call_command("moderation_apikey", "bob", stdout=StringIO(), stderr=StringIO())

    assert ApiKey.objects.filter(user__username="bob").count() == 2
    assert get_user_model().objects.filter(username="bob").count() == 1


def test_revoked_key_no_longer_authenticates(api, client_user):  # type: ignore[no-untyped-def]
    assert api.get("/api/v1/posts/").status_code == 200

    apikey_revoke(key=ApiKey.objects.get(user=client_user))

    assert api.get("/api/v1/posts/").status_code == 401
