"""Fixtures shared by the whole suite: users, API clients, tiny checkpoints, services."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def require_service(reason: str) -> None:
    """Skip outside CI; in CI a missing service is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh tiny checkpoints per session, so a stale copy never hides a change to the builders."""
    from vlm_engine.tiny import tiny_checkpoints_write

    directory = tmp_path_factory.mktemp("tiny")
    tiny_checkpoints_write(directory)
    return directory


# Django-dependent imports stay inside fixtures, so the engine's tests also run without Django.
@pytest.fixture
def client_user(db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    return UserFactory(username="acme")


@pytest.fixture
def other_user(db):  # type: ignore[no-untyped-def]
    from tests.factories import UserFactory

    return UserFactory(username="globex")


def _api_client_for(user):  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    from moderation.services.apikeys import apikey_create

    _, raw = apikey_create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return api


@pytest.fixture
def api(client_user):  # type: ignore[no-untyped-def]
    return _api_client_for(client_user)


@pytest.fixture
def other_api(other_user):  # type: ignore[no-untyped-def]
    return _api_client_for(other_user)
