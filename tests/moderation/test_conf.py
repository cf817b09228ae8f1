"""Settings: defaults, overrides honoured, configuration errors reported with stable ids."""
from __future__ import annotations

import re

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from moderation.conf import DEFAULTS, moderation_settings
from tests.conftest import ROOT


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


def test_the_readme_s_configuration_table_lists_every_setting():  # type: ignore[no-untyped-def]
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Post lifecycle")]
    listed = {key for row in table.splitlines() if row.startswith("| `")
              for key in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}

    assert sorted(set(DEFAULTS) - listed) == [] and sorted(listed - set(DEFAULTS)) == []


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
        ({"TRANSPARENCY_DB_URL": "http://transparency.example.eu", "TRANSPARENCY_DB_TOKEN": "t"},
         ["moderation.E016"]),
        ({"TRANSPARENCY_DB_URL": "https://transparency.example.eu"}, ["moderation.E016"]),
        ({"TRANSPARENCY_DB_URL": "https://:99999", "TRANSPARENCY_DB_TOKEN": "t"}, ["moderation.E016"]),
        ({"TRANSPARENCY_DB_URL": "https://me:secret@transparency.example.eu", "TRANSPARENCY_DB_TOKEN": "t"},
         ["moderation.E016"]),
        ({"TRANSPARENCY_DB_TOKEN": None}, ["moderation.E016"]),
        ({"TRANSPARENCY_DB_RETRY_DELAYS": []}, ["moderation.E017"]),
        ({"TRANSPARENCY_DB_RETRY_DELAYS": [60, -1]}, ["moderation.E017"]),
        ({"TRANSPARENCY_DB_INTERVAL": 0}, ["moderation.E017"]),
        ({"MODELS": {"verifier_weight": 1.5}}, ["moderation.E024"]),
        ({"MODELS": {"verifier_weight": "0.3"}}, ["moderation.E024"]),
        ({"MODELS": {"verifier": None}}, ["moderation.E024"]),
        ({"MODELS": {"verifier": "", "verifier_weight": 0}}, []),
    ],
)
def test_configuration_errors_have_stable_ids(override, expected):  # type: ignore[no-untyped-def]
    with override_settings(MODERATION=override):
        assert check_ids() == expected


@pytest.mark.parametrize("url", ["https://transparency.example.eu", "http://127.0.0.1:8080", "http://localhost"])
def test_a_transparency_database_over_https_or_on_loopback_passes(url):  # type: ignore[no-untyped-def]
    with override_settings(MODERATION={"TRANSPARENCY_DB_URL": url, "TRANSPARENCY_DB_TOKEN": "t"}):
        assert check_ids() == []


def test_a_local_checkpoint_of_an_unregistered_family_is_reported(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "blip").mkdir()
    (tmp_path / "blip" / "config.json").write_text('{"model_type": "blip"}')
    (tmp_path / "siglip").mkdir()
    (tmp_path / "siglip" / "config.json").write_text('{"model_type": "siglip"}')
    models = {"embedder": str(tmp_path / "blip"), "grounder": str(tmp_path / "siglip"), "generator": "",
              "text": str(tmp_path / "siglip")}
    with override_settings(MODERATION={"MODELS": models}):
        errors = [e for e in run_checks() if e.id.startswith("moderation.")]
    assert [(e.id, e.msg) for e in errors] == [
        ("moderation.E022", "MODERATION['MODELS']['embedder']: no embedder family is registered for model_type "
                            "'blip'; registered: clip, altclip, chinese_clip, siglip, siglip2, align, flava."),
        ("moderation.E022", "MODERATION['MODELS']['grounder']: no grounder family is registered for model_type "
                            "'siglip'; registered: owlv2."),
    ]  # the text role takes any encoder; "" disables the generator


def test_a_malformed_magic_generator_is_reported():  # type: ignore[no-untyped-def]
    with override_settings(MODERATION={"MODELS": {"generator": "magic:gpt2?embedder=clip&beta=-1"}}):
        errors = [e for e in run_checks() if e.id.startswith("moderation.")]
    assert [(e.id, e.msg) for e in errors] == [
        ("moderation.E022", "MODERATION['MODELS']['generator']: MaGiC's beta must not be negative, not -1.0."),
    ]
    with override_settings(MODERATION={"MODELS": {"generator": "magic:gpt2?embedder=openai/clip-vit-base-patch32"}}):
        assert check_ids() == []


def test_a_registered_family_passes_the_checks(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "config.json").write_text('{"model_type": "siglip2"}')
    with override_settings(MODERATION={"MODELS": {"clip": str(tmp_path), "grounder": "google/owlv2-base-patch16"}}):
        assert check_ids() == []


def test_schema_class_must_be_spectacular():  # type: ignore[no-untyped-def]
    with override_settings(REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema"}):
        assert check_ids() == ["moderation.E008"]


@pytest.mark.django_db
def test_models_and_migrations_agree():  # type: ignore[no-untyped-def]
    from io import StringIO

    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())
