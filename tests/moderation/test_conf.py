"""Settings: defaults, overrides honoured, configuration errors reported with stable ids."""
from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from moderation.conf import DEFAULTS, moderation_settings


def check_ids() -> list[str]:
    return sorted(e.id for e in run_checks() if e.id.startswith("moderation."))


def test_defaults_apply_when_unset():  # type: ignore[no-untyped-def]
    with override_settings(MODERATION={}):
        assert moderation_settings.BATCH_SIZE == DEFAULTS["BATCH_SIZE"]


def test_override_settings_is_honoured():  # type: ignore[no-untyped-def]
    with override_settings(MODERATION={"BATCH_SIZE": 3}):
        assert moderation_settings.BATCH_SIZE == 3
    assert moderation_settings.BATCH_SIZE == DEFAULTS["BATCH_SIZE"]


def test_unknown_attribute_raises():  # type: ignore[no-untyped-def]
    with pytest.raises(AttributeError):
        moderation_settings.NOPE  # noqa: B018


def test_valid_settings_pass_checks():  # type: ignore[no-untyped-def]
    assert check_ids() == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"BATHC_SIZE": 4}, ["moderation.E001"]),
        ({"PROFILE": "huge"}, ["moderation.E002"]),
        ({"DTYPE": "int8"}, ["moderation.E003"]),
        ({"BATCH_SIZE": 0}, ["moderation.E004"]),
        ({"REVIEW_SAMPLE_RATE": 1.5}, ["moderation.E005"]),
        ({"ALLOWED_IMAGE_FORMATS": ["JPEG", "SVG"]}, ["moderation.E006"]),
        ({"MODELS": ["clip"]}, ["moderation.E007"]),
        ({"MODELS": {"verifier_weight": 1.5}}, ["moderation.E024"]),
        ({"MODELS": {"verifier_weight": "0.3"}}, ["moderation.E024"]),
        ({"MODELS": {"verifier": None}}, ["moderation.E024"]),
        ({"MODELS": {"verifier": "", "verifier_weight": 0}}, []),
    ],
)
def test_configuration_errors_have_stable_ids(override, expected):  # type: ignore[no-untyped-def]
    with override_settings(MODERATION=override):
        assert check_ids() == expected


def test_schema_class_must_be_spectacular():  # type: ignore[no-untyped-def]
    with override_settings(REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema"}):
        assert check_ids() == ["moderation.E008"]


@pytest.mark.django_db
def test_models_and_migrations_agree():  # type: ignore[no-untyped-def]
    from io import StringIO

    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())
