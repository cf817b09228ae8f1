"""Property-based fuzzing of API v1 against its own OpenAPI document, with schemathesis.

The schema is served by the app itself (``/api/v1/schema/``) and every operation is called through
Django's real WSGI application, in process: no server, no network. Every built-in check runs, on
valid and on invalid ("negative") data, with a fixed example budget and a fixed seed so that CI
sees the same cases on every run. A second pass sends no credentials at all (the 401 path).

Why ``transactional_db`` and not ``db``: ``get_wsgi_application()`` is the production handler, which
(unlike Django's test ``Client``) runs ``close_old_connections`` on ``request_started`` and
``request_finished``. Inside ``db``'s wrapping transaction the connection's autocommit differs
from the settings, so that handler closes it and the test transaction is lost after the first
request. With ``transactional_db`` every request runs in autocommit, as in production: the views'
own ``atomic`` blocks, ``select_for_update`` (idempotency) and ``on_commit`` hooks behave for real,
and the tables are flushed afterwards.
"""
from __future__ import annotations

import os
from typing import Any

import pytest

try:
    import hypothesis
    import schemathesis  # tested with schemathesis==4.32.5
except ImportError:  # pragma: no cover
    if os.environ.get("CI") == "true":  # as with services (tests/conftest.py): in CI a missing tool fails
        raise
    pytest.skip("schemathesis is not installed", allow_module_level=True)

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA_PATH = "/api/v1/schema/"
MAX_EXAMPLES = 25        # fuzzing-phase budget per operation (the examples and coverage phases are bounded by the schema)
UNAUTH_MAX_EXAMPLES = 5  # the 401 pass only needs to reach every operation
SEED = 20240611          # fixed: CI and a developer's machine generate the same cases

# The search endpoint answers 503 ``search_unavailable`` when no GPU worker embeds the query in time;
# there is no worker here, so that is its expected answer (and the only 5xx allowed anywhere).
SEARCH_OPERATION_ID = "search"
SEARCH_LABEL = "GET /api/v1/search/"
# A post's image answers anyone without the right to see it as if the post did not exist (404),
# credentials or not: an anonymous request must not learn that the post is there.
IMAGE_PATHS = ("/image/", "/image/thumbnail/")
BUSINESS_RULE_OPERATIONS = ("posts_submit", "webhook_set", "posts_questions", "posts_groundings", "posts_captions",
                            "banks_create", "banks_update", "bank_entries_add", "bank_import", "posts_notices_create",
                            "posts_appeals_create", "posts_list")


def _config(*, max_examples: int) -> Any:
    search_statuses = ["2xx", "3xx", "4xx", "503"]
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {
            "mode": "all",                # positive and negative data
            "max-examples": max_examples,
            "deterministic": True,        # derandomized: the same cases every run
            "database": "none",           # no .hypothesis/ replay store: nothing carries over between runs
        },
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "checks": {"enabled": True},      # every built-in check
        "operations": [
            {"include-operation-id": SEARCH_OPERATION_ID,
             "checks": {"not_a_server_error": {"expected-statuses": search_statuses}}},
            # Rules no schema can state, so schema-valid requests are rightly refused with 400:
            # a post needs an image or a text; a webhook host must resolve to a public address;
            # an ad-hoc request needs an existing post with an image; every line of an imported hash list
            # must be a PDQ hash; a notice names one of the post's policy categories; an appeal's
            # statement must hold more than whitespace, and no NUL; a list's cursor must be one the API
            # returned (it is opaque: any string fits its schema); unknown body fields are refused
            # (the bodies of these operations, as drf-spectacular writes them, do not forbid other
            # properties). Every other check still runs.
            *({"include-operation-id": op, "checks": {"positive_data_acceptance": {"enabled": False}}}
              for op in BUSINESS_RULE_OPERATIONS),
        ],
    })


@pytest.fixture
def api_key_header(transactional_db, settings, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Settings for a bounded run and an API key of a real client, returned as its header value."""
    from moderation.services.apikeys import apikey_create
    from tests.factories import UserFactory

    settings.MODERATION = {**settings.MODERATION, "SEARCH_TIMEOUT": 0.05, "THROTTLE_RATE": None}
    settings.MEDIA_ROOT = tmp_path / "media"
    # Wake-ups fire on commit here (autocommit); keep them off the shared broker folder / Redis.
    monkeypatch.setattr("moderation.dispatch._task_send", lambda name, queue: None)
    _, raw = apikey_create(user=UserFactory(username="fuzzer"))
    return f"Api-Key {raw}"


def _schema(*, max_examples: int) -> Any:
    """The app's own document, fetched through the production WSGI handler (no database needed)."""
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi(SCHEMA_PATH, get_wsgi_application(),
                                          config=_config(max_examples=max_examples))


# One client and key serve every generated case of an operation (the database is flushed between
# operations): that reuse is intended, so Hypothesis' function-scoped-fixture health check is off.
FIXTURE_REUSED = hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])

# Loaded at collection, so that every operation is its own test item (``tests/...::test_x[GET /api/v1/...]``).
authed = _schema(max_examples=MAX_EXAMPLES)
anonymous = _schema(max_examples=UNAUTH_MAX_EXAMPLES)


def _routed(response: Any) -> bool:
    """Whether the request's path resolves to a view at all."""
    from urllib.parse import unquote, urlsplit

    from django.urls import Resolver404, resolve

    try:
        resolve(unquote(urlsplit(response.request.url).path))
    except Resolver404:
        return False
    return True


def _search_503_is_search_unavailable(ctx: Any, response: Any, case: Any) -> None:
    """The one allowed 5xx must be the documented ``search_unavailable``, nothing else."""
    if response.status_code == 503:
        assert case.operation.label == SEARCH_LABEL, f"503 outside search: {case.operation.label}"
        assert response.json().get("code") == "search_unavailable", response.text


@authed.parametrize()
@FIXTURE_REUSED
def test_fuzz_with_api_key(case: Any, api_key_header: str) -> None:
    # Passing the key here (not in the config) marks it as explicit auth: ``ignored_auth`` then
    # re-sends successful requests without it and with a wrong one, and expects 401/403.
    case.call_and_validate(headers={"Authorization": api_key_header},
                           additional_checks=[_search_503_is_search_unavailable])


@anonymous.parametrize()
@FIXTURE_REUSED
def test_fuzz_without_credentials(case: Any, api_key_header: str) -> None:
    # The schema's ``ApiKeyAuth`` makes schemathesis generate Authorization values of its own; drop
    # them so that every request is anonymous, then expect the 401 with its JSON body and challenge.
    if case.headers:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "authorization"}
    response = case.call_and_validate(additional_checks=[_search_503_is_search_unavailable])
    if not _routed(response):
        # A path the URL patterns don't match (e.g. a non-UUID id) never reaches the API's auth.
        assert response.status_code == 404, (response.status_code, response.text)
        return
    if case.operation.path.endswith(IMAGE_PATHS):
        expected = 404 if case.method.upper() in ("GET", "HEAD") else 405
        assert response.status_code == expected, (response.status_code, response.text)
        return
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.json()["code"] == "not_authenticated", response.text
    assert response.headers.get("www-authenticate") == ["Api-Key"], response.headers
