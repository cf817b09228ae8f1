"""The engine of this worker process: loaded once, lazily, from the MODERATION settings."""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING

from moderation.conf import moderation_settings

if TYPE_CHECKING:
    from vlm_engine.engine import Engine

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_engine: Engine | None = None


def engine_get() -> Engine:
    """The process's engine, built on first use (imports torch only then)."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _engine_build()
        return _engine


def _engine_build() -> Engine:
    from vlm_engine.engine import Engine
    from vlm_engine.loading import engine_config_resolve, roles_notice

    s = moderation_settings
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
    return engine


def engine_reset() -> None:
    """Forget the loaded engine (tests, and settings changes)."""
    global _engine
    with _lock:
        _engine = None
