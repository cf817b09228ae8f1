"""System checks for the MODERATION settings, with stable ids."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from drf_spectacular.openapi import AutoSchema

from moderation.conf import DEFAULTS, EF_SEARCH_MAX, moderation_settings
from vlm_engine.pdq import PDQ_BITS

PROFILES = ("tiny", "small", "large")
DTYPES = ("float32", "bfloat16", "float16")
PRECEDENTS = ("asif", "knn")
FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
POSITIVE_INTS = ("BATCH_SIZE", "MAX_UPLOAD_BYTES", "MAX_IMAGE_PIXELS", "MAX_IMAGE_FRAMES", "MAX_TEXT_LENGTH",
                 "MAX_METADATA_BYTES", "MAX_ATTEMPTS", "CLAIM_TIMEOUT", "QUEUED_STALE_AFTER",
                 "MAX_QUESTION_LENGTH", "MAX_PHRASES", "MAX_PHRASE_LENGTH", "MAX_CAPTION_PROMPT_LENGTH",
                 "SEARCH_MAX_K", "MAX_NEW_TOKENS", "REVIEW_CLAIM_MINUTES", "REVIEW_UNDO_SECONDS",
                 "APPEAL_WINDOW_DAYS",
                 "IDEMPOTENCY_KEY_TTL", "MAX_BOXES_PER_PHRASE", "MAX_BOXES_PER_IMAGE", "NEAREST_EXAMPLES")


@register()
def moderation_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = [
        Error(f"Unknown MODERATION setting {key!r}.",
              hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.", id="moderation.E001")
        for key in moderation_settings.unknown_keys()
    ]
    s = moderation_settings
    if s.PROFILE not in PROFILES:
        errors.append(Error(f"MODERATION['PROFILE'] must be one of {PROFILES}, not {s.PROFILE!r}.",
                            id="moderation.E002"))
    if s.DTYPE not in DTYPES:
        errors.append(Error(f"MODERATION['DTYPE'] must be one of {DTYPES}, not {s.DTYPE!r}.",
                            id="moderation.E003"))
    for key in POSITIVE_INTS:
        value = getattr(s, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            errors.append(Error(f"MODERATION[{key!r}] must be a positive integer, not {value!r}.",
                                id="moderation.E004"))
    for key in ("REVIEW_SAMPLE_RATE", "TEXT_WEIGHT", "GROUNDING_THRESHOLD", "WAKEUP_INTERVAL", "BOX_MERGE_IOU"):
        value = getattr(s, key)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            errors.append(Error(f"MODERATION[{key!r}] must be a number between 0 and 1, not {value!r}.",
                                id="moderation.E005"))
    unknown_formats = set(s.ALLOWED_IMAGE_FORMATS) - FORMATS
    if unknown_formats or not s.ALLOWED_IMAGE_FORMATS:
        errors.append(Error(f"MODERATION['ALLOWED_IMAGE_FORMATS'] must be a non-empty subset of "
                            f"{sorted(FORMATS)}; got {s.ALLOWED_IMAGE_FORMATS!r}.", id="moderation.E006"))
    if s.THROTTLE_RATE is not None and not _rate_valid(s.THROTTLE_RATE):
        errors.append(Error(f"MODERATION['THROTTLE_RATE'] must look like '600/min' or be None, "
                            f"not {s.THROTTLE_RATE!r}.", id="moderation.E009"))
    if s.ANON_THROTTLE_RATE is not None and not _rate_valid(s.ANON_THROTTLE_RATE):
        errors.append(Error(f"MODERATION['ANON_THROTTLE_RATE'] must look like '60/min' or be None, "
                            f"not {s.ANON_THROTTLE_RATE!r}.", id="moderation.E009"))
    if s.CLIENT_IP_HEADER is not None and not (isinstance(s.CLIENT_IP_HEADER, str) and s.CLIENT_IP_HEADER):
        errors.append(Error("MODERATION['CLIENT_IP_HEADER'] must be a header name or None.", id="moderation.E011"))
    if not _rate_valid(s.REVIEWER_REQUEST_RATE):
        errors.append(Error(f"MODERATION['REVIEWER_REQUEST_RATE'] must look like '30/min', "
                            f"not {s.REVIEWER_REQUEST_RATE!r}.", id="moderation.E009"))
    if s.RETENTION_MODE not in ("delete", "anonymize") or not (
            s.RETENTION_DAYS is None or (isinstance(s.RETENTION_DAYS, int) and s.RETENTION_DAYS > 0)):
        errors.append(Error("MODERATION['RETENTION_DAYS'] must be a positive integer or None and "
                            "RETENTION_MODE 'delete' or 'anonymize'.", id="moderation.E010"))
    errors += _liveness_errors() + _bank_errors() + _precedent_errors() + _transparency_errors()
    if not isinstance(s.MODELS, dict):
        errors.append(Error("MODERATION['MODELS'] must be a dict of role -> checkpoint.",
                            id="moderation.E007"))
    else:
        errors += _model_family_errors(s.MODELS)
    return errors + _verifier_errors()


def _verifier_errors() -> list[Error]:
    models = moderation_settings.MODELS if isinstance(moderation_settings.MODELS, dict) else {}
    errors = []
    if not isinstance(models.get("verifier", ""), str):
        errors.append(Error(f"MODERATION['MODELS']['verifier'] must be a checkpoint id or path, or '' to turn the "
                            f"verifier off; not {models['verifier']!r}.", id="moderation.E024"))
    weight = models.get("verifier_weight", 0.3)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        errors.append(Error(f"MODERATION['MODELS']['verifier_weight'] must be a number between 0 and 1, "
                            f"not {weight!r}.", id="moderation.E024"))
    return errors


def _model_family_errors(models: dict[str, Any]) -> list[Error]:
    """A local checkpoint whose config.json names a model_type no adapter of its role is registered for."""
    from vlm_engine.config import ROLE_KINDS
    from vlm_engine.loading import FIELD_ALIASES
    from vlm_engine.registry import checkpoint_family_problem

    errors = []
    for key, name in models.items():
        kind = ROLE_KINDS.get(FIELD_ALIASES.get(key, key))
        problem = checkpoint_family_problem(kind, name) if kind and isinstance(name, str) else None
        if problem:
            errors.append(Error(f"MODERATION['MODELS'][{key!r}]: {problem}.",
                                hint="Point the role at a checkpoint of a registered family (README, 'Model "
                                     "families'), or register an adapter for it (vlm_engine/registry.py).",
                                id="moderation.E022"))
    return errors


def _precedent_errors() -> list[Error]:
    s, errors = moderation_settings, []
    if s.PRECEDENTS not in PRECEDENTS:
        errors.append(Error(f"MODERATION['PRECEDENTS'] must be one of {PRECEDENTS}, not {s.PRECEDENTS!r}.",
                            id="moderation.E015"))
    exponent = s.ASIF_EXPONENT
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not 0 < exponent <= 64:
        errors.append(Error(f"MODERATION['ASIF_EXPONENT'] must be a number in (0, 64], not {exponent!r}.",
                            id="moderation.E015"))
    return errors


def _transparency_errors() -> list[Error]:
    # The token is never repeated in a message: check output ends up in logs.
    s, errors = moderation_settings, []
    url, token = s.TRANSPARENCY_DB_URL, s.TRANSPARENCY_DB_TOKEN
    if not isinstance(token, str):
        errors.append(Error("MODERATION['TRANSPARENCY_DB_TOKEN'] must be a string.", id="moderation.E016"))
    if not isinstance(url, str) or (url and not _transparency_url_valid(url)):
        # Not repeated either: a URL may carry credentials.
        errors.append(Error("MODERATION['TRANSPARENCY_DB_URL'] must be '' or an https URL with a host (http only "
                            "for a loopback host) and no user or password in it.", id="moderation.E016"))
    elif url and not token:
        errors.append(Error("MODERATION['TRANSPARENCY_DB_URL'] is set but TRANSPARENCY_DB_TOKEN is empty.",
                            hint="Set the API token the DSA Transparency Database issued.", id="moderation.E016"))
    delays, interval = s.TRANSPARENCY_DB_RETRY_DELAYS, s.TRANSPARENCY_DB_INTERVAL
    if not (isinstance(delays, (list, tuple)) and delays and all(_seconds(d) for d in delays)):
        errors.append(Error(f"MODERATION['TRANSPARENCY_DB_RETRY_DELAYS'] must be a non-empty list of seconds "
                            f"(numbers >= 0), not {delays!r}.", id="moderation.E017"))
    if not (_seconds(interval) and interval > 0):
        errors.append(Error(f"MODERATION['TRANSPARENCY_DB_INTERVAL'] must be a positive number of seconds, "
                            f"not {interval!r}.", id="moderation.E017"))
    return errors


def _transparency_url_valid(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        return False
    loopback = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    return (bool(parts.hostname) and parts.username is None
            and (parts.scheme == "https" or (parts.scheme == "http" and loopback)))


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _liveness_errors() -> list[Error]:
    s, errors = moderation_settings, []
    for key in ("WORKER_HEARTBEAT_INTERVAL", "READY_GPU_WORKER_MAX_AGE", "READY_DEFAULT_WORKER_MAX_AGE"):
        value = getattr(s, key)
        optional = key.startswith("READY_")
        if (value is None and optional) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                            and value > 0):
            continue
        errors.append(Error(f"MODERATION[{key!r}] must be a positive number of seconds"
                            f"{' or None' if optional else ''}, not {value!r}.", id="moderation.E013"))
    return errors


@register()
def moderation_worker_start_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """What would stop a worker from building its engine, seen from this host (warnings: the
    workers may run elsewhere, with another torch)."""
    s = moderation_settings
    warnings: list[CheckMessage] = []
    if s.DEVICE != "cpu" and _torch_installed():
        from vlm_engine.devices import device_problem

        problem = device_problem(s.DEVICE)
        if problem is not None:
            warnings.append(Warning(
                f"MODERATION['DEVICE'] = {s.DEVICE!r}: {problem}. A worker started here fails every post.",
                hint='Use "DEVICE": "cpu" on hosts without that device.', id="moderation.W020"))
    tiny_dir = Path(s.TINY_CHECKPOINT_DIR)
    if not _directory_writable(tiny_dir):
        warnings.append(Warning(
            f"MODERATION['TINY_CHECKPOINT_DIR'] = {str(tiny_dir)!r} cannot be created or written; a worker "
            "that falls back to the tiny checkpoints (offline, or PROFILE 'tiny') fails every post.",
            hint="Point TINY_CHECKPOINT_DIR at a writable directory, or leave it unset for the user's cache.",
            id="moderation.W021"))
    return warnings


def _torch_installed() -> bool:
    """Whether this host could run a worker at all (a web-only install has no torch)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:
        return False


def _directory_writable(path: Path) -> bool:
    """Whether ``path`` is a writable directory, or could be created as one."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def _bank_errors() -> list[Error]:
    s, errors = moderation_settings, []
    for key in ("BANK_REVIEWED_VIOLATING", "BANK_REVIEWED_ALLOWED"):
        if not isinstance(getattr(s, key), bool):
            errors.append(Error(f"MODERATION[{key!r}] must be True or False.", id="moderation.E014"))
    quality = s.BANK_MIN_QUALITY
    if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
        errors.append(Error(f"MODERATION['BANK_MIN_QUALITY'] must be an integer from 0 to 100, not {quality!r}.",
                            id="moderation.E014"))
    distance = s.REVIEW_CLUSTER_DISTANCE
    if not isinstance(distance, int) or isinstance(distance, bool) or not 0 <= distance <= PDQ_BITS:
        errors.append(Error(f"MODERATION['REVIEW_CLUSTER_DISTANCE'] must be an integer from 0 to {PDQ_BITS} "
                            f"(PDQ bits), not {distance!r}.", id="moderation.E019"))
    ef_search = s.SEARCH_EF_SEARCH
    if not isinstance(ef_search, int) or isinstance(ef_search, bool) or not 1 <= ef_search <= EF_SEARCH_MAX:
        errors.append(Error(f"MODERATION['SEARCH_EF_SEARCH'] must be an integer from 1 to {EF_SEARCH_MAX} "
                            f"(pgvector's hnsw.ef_search), not {ef_search!r}.", id="moderation.E018"))
    return errors


def _rate_valid(rate: object) -> bool:
    num, _, period = str(rate).partition("/")
    return num.isdigit() and period[:1] in {"s", "m", "h", "d"}


@register()
def moderation_schema_class_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from rest_framework.settings import api_settings

    schema_class = api_settings.DEFAULT_SCHEMA_CLASS
    if schema_class is None or not issubclass(schema_class, AutoSchema):
        return [Error("REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] must be drf-spectacular's AutoSchema "
                      "for the API's OpenAPI schema.",
                      hint='REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}',
                      id="moderation.E008")]
    return []


# Caches that keep their entries inside one process: with them every web process (and host) has
# its own throttle buckets, so a client gets THROTTLE_RATE once per process.
PROCESS_LOCAL_CACHES = ("django.core.cache.backends.locmem.LocMemCache",
                        "django.core.cache.backends.dummy.DummyCache")


@register(Tags.caches, deploy=True)
def moderation_throttle_cache_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from django.conf import settings

    s = moderation_settings
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if (s.THROTTLE_RATE is None and s.ANON_THROTTLE_RATE is None) or backend not in PROCESS_LOCAL_CACHES:
        return []
    return [Error(f"API throttling is on but the default cache ({backend}) is not shared between processes, "
                  "so each process (and host) counts its own requests.",
                  hint="Point CACHES['default'] at a shared cache, e.g. "
                       "'django.core.cache.backends.redis.RedisCache', or set THROTTLE_RATE and "
                       "ANON_THROTTLE_RATE to None.", id="moderation.E012")]
