"""The engine of this worker process: loaded once from the MODERATION settings (at start, or on first use).

An engine that cannot be built (no CUDA for DEVICE "cuda", unreadable checkpoints, no torch)
is replaced by :class:`UnavailableEngine`, whose every call raises :class:`EngineUnavailable`
with the reason: the pipeline then records a failed attempt per claimed post, so posts end
``failed`` with that reason after MAX_ATTEMPTS instead of sitting in ``analyzing``.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any, NoReturn, cast

from moderation.conf import moderation_settings

if TYPE_CHECKING:
    from vlm_engine.engine import Engine

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_engine: Engine | None = None
_unavailable: str | None = None  # why the engine could not be built, once that is known


class EngineUnavailable(RuntimeError):
    """This worker could not build its engine; the message says why and what to change."""


class UnavailableEngine:
    """Stands in for the engine that could not be built: every call fails with the reason."""

    model_version = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise EngineUnavailable(self.reason)

    decode = analyze = ask = ground = caption = embed_query = questions_unanswered = _fail


def engine_get() -> Engine:
    """The process's engine, built on first use (imports torch only then), or the stand-in."""
    global _engine
    with _lock:
        if _engine is None and _unavailable is None:
            try:
                _engine = _engine_build()
            except EngineUnavailable as exc:
                _unavailable_say(str(exc))
            except Exception as exc:  # noqa: BLE001 — any build failure must reach the posts, not strand them
                logger.exception("Building the engine failed")
                _unavailable_say(f"building the engine failed: {type(exc).__name__}: {exc}")
        if _engine is None:
            return cast("Engine", UnavailableEngine(cast(str, _unavailable)))
        return _engine


def _unavailable_say(reason: str) -> None:
    global _unavailable
    _unavailable = reason
    banner = "!" * 78
    logger.error("\n%s\n This worker cannot analyse anything: %s\n Every post it claims fails with this reason "
                 "(the post ends 'failed' after MAX_ATTEMPTS).\n Fix the settings and restart the worker.\n%s",
                 banner, reason, banner)


def engine_start() -> str | None:
    """Build the engine now (at worker start); returns why it cannot be built, or None."""
    engine_get()
    return _unavailable


def _engine_build() -> Engine:
    from vlm_engine.devices import device_problem
    from vlm_engine.engine import Engine
    from vlm_engine.loading import engine_config_resolve, roles_notice

    s = moderation_settings
    problem = device_problem(s.DEVICE)
    if problem is not None:
        raise EngineUnavailable(f"MODERATION['DEVICE'] = {s.DEVICE!r}: {problem}")
    config, notice = engine_config_resolve(
        s.PROFILE, tiny_dir=s.TINY_CHECKPOINT_DIR, device=s.DEVICE, overrides=s.MODELS,
        timeout_s=s.MODEL_LOAD_TIMEOUT)
    if notice:
        banner = "!" * 78
        logger.warning("\n%s\n%s\n%s", banner, notice, banner)
    config = dataclasses.replace(config, batch_size=s.BATCH_SIZE, dtype=s.DTYPE, text_weight=s.TEXT_WEIGHT,
                                 look_closer=s.LOOK_CLOSER, grounding_threshold=s.GROUNDING_THRESHOLD,
                                 max_new_tokens=s.MAX_NEW_TOKENS)
    engine = Engine.from_config(config)
    logger.info("Engine ready: profile=%s model=%s device=%s", config.profile, engine.model_version,
                config.device)
    logger.warning("%s", roles_notice(engine.roles_real()))
    if engine.reader is not None:
        logger.warning("%s", engine.reader.device_note)
    return engine


def engine_reset() -> None:
    """Forget the loaded engine and any build failure (tests, and settings changes)."""
    global _engine, _unavailable
    with _lock:
        _engine = _unavailable = None
