"""Fixtures shared by the whole suite: users, API clients, tiny checkpoints, services."""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def require_service(reason: str) -> None:
    """Skip outside CI; in CI a missing service is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def tls_server_context(directory: Path, host: str) -> tuple[ssl.SSLContext, Path]:
    """A server-side TLS context whose certificate (its own CA, one day) names ``host``; returns it with
    the certificate file a client must trust. Skips without openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


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
