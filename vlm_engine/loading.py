"""Picks a loadable engine configuration: local checkpoints, a download, or the tiny fallback."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from typing import Any

from vlm_engine.config import PACKAGED_TEXT, ROLE_FIELDS, ROLE_KINDS, EngineConfig

HUB_HOST = "huggingface.co"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Tokenizer files by family: a tokenizers JSON, a BPE (CLIP) or WordPiece (BERT: ALIGN, FLAVA, ChineseCLIP)
# vocabulary, or a SentencePiece model (SigLIP, XLM-R).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model")
# A checkpoint (an embedder, OWLv2 or a VLM) needs one file of each group. Transformers 5 saves the image
# processor inside processor_config.json; hub checkpoints saved earlier have preprocessor_config.json.
_CHECKPOINT_FILE_GROUPS = (
    ("config.json",),
    ("preprocessor_config.json", "processor_config.json"),
    _TOKENIZER_FILES,
    _WEIGHT_FILES,
)
# Another name a setting may be given by: the embedder field is called "clip" for history's sake.
FIELD_ALIASES = {"embedder": "clip"}
_TINY_NOTICE = ("using the random-weight 'tiny' checkpoints: what they produce is withheld as 'unavailable', "
                "and scores from the tiny embedder are noise.")


def engine_config_resolve(
    profile: str,
    *,
    tiny_dir: str,
    device: str = "cpu",
    overrides: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
) -> tuple[EngineConfig, str | None]:
    """Return a config whose checkpoints are on disk, and a notice for the operator if any.

    A real profile is usable only when every enabled role's checkpoint (CLIP, and the
    grounder, generator and verifier unless disabled with "") is a local path or in the Hugging Face
    cache, or downloads once the hub answers within `timeout_s`; otherwise the tiny
    checkpoints stand in for all of them.

    Args:
        profile: "tiny", "small" or "large".
        tiny_dir: where the tiny checkpoints live (written there if missing).
        device: torch device string.
        overrides: setting name -> string value (e.g. from environment variables).
        timeout_s: how long to wait for the hub before giving up on it.

    Raises:
        ValueError: unknown profile, setting, or an invalid value.
    """
    settings = _overrides_parse(overrides or {})
    config = EngineConfig.for_profile(profile, tiny_dir=tiny_dir, device=device, **settings)
    if profile == "tiny":
        return _tiny_config(config, settings), f"NOTICE: {_TINY_NOTICE}"
    problem = _checkpoints_obtain([part for parts in _role_checkpoint_parts(config).values() for part in parts],
                                  timeout_s)
    if problem is None:
        return config, None
    notice = f"NOTICE: the {profile!r} models could not be loaded ({problem}); {_TINY_NOTICE}"
    return _tiny_config(config, settings), notice


def roles_notice(roles_real: Mapping[str, bool]) -> str:
    """One line for the operator: which roles run trained weights, and which random ones (output withheld)."""
    real = [kind for kind, is_real in roles_real.items() if is_real]
    random = [kind for kind, is_real in roles_real.items() if not is_real]
    line = f"Roles with a real checkpoint: {', '.join(real) or 'none'}."
    if random:
        line += f" Random weights, output withheld as 'unavailable': {', '.join(random)}."
    return line


def config_roles_real(config: EngineConfig) -> dict[str, bool]:
    """Role kind -> whether its configured checkpoint holds trained weights, read from the files on disk."""
    from vlm_engine.checkpoints import checkpoint_is_real

    real = {ROLE_KINDS[field]: all(checkpoint_is_real(part) for part in parts)
            for field, parts in _role_checkpoint_parts(config).items()}
    if config.reader == "rapidocr":
        real["reader"] = True  # its models ship inside the rapidocr wheel
    elif config.reader == "vlm" and "generator" in real:
        real["reader"] = real["generator"]
    if config.text:
        real["text"] = config.text == PACKAGED_TEXT or checkpoint_is_real(config.text)
    return real


def hub_reachable(timeout_s: float) -> bool:
    """Whether a TCP connection to the Hugging Face hub opens within `timeout_s`."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def checkpoint_cached(name_or_path: str) -> bool:
    """Whether the checkpoint's config, processor, tokenizer and weights are on disk (path or HF cache)."""
    from transformers.utils.hub import cached_file

    def present(filename: str) -> bool:
        path = cached_file(
            name_or_path, filename, local_files_only=True, _raise_exceptions_for_missing_entries=False
        )
        return path is not None

    try:
        return all(any(present(name) for name in group) for group in _CHECKPOINT_FILE_GROUPS)
    except (OSError, ValueError):
        # ValueError: not a valid repo id nor an existing directory.
        return False


def checkpoint_download(name: str) -> None:
    """Download a checkpoint into the HF cache, one weights format only (progress bars from huggingface_hub)."""
    from huggingface_hub import list_repo_files, snapshot_download

    files = set(list_repo_files(name))
    weights = next((weight for weight in _WEIGHT_FILES if weight in files), _WEIGHT_FILES[0])
    # Transformers 5 processors may keep their chat template in chat_template.jinja; *.model: SentencePiece.
    snapshot_download(name, allow_patterns=["*.json", "*.txt", "*.jinja", "*.model", weights])


def _checkpoints_obtain(names: list[str], timeout_s: float) -> str | None:
    """Make every checkpoint available locally; return why not, or None on success."""
    missing = [name for name in names if not checkpoint_cached(name)]
    if not missing:
        return None
    # Probe the hub once for all roles: each probe may wait the whole timeout.
    if not hub_reachable(timeout_s):
        verb = "is" if len(missing) == 1 else "are"
        return f"{', '.join(missing)} {verb} not in the local cache and {HUB_HOST} is unreachable"
    for name in missing:
        problem = _checkpoint_download_checked(name)
        if problem is not None:
            return problem
    return None


def _checkpoint_download_checked(name: str) -> str | None:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        checkpoint_download(name)
    except (OSError, HfHubHTTPError, ValueError) as err:
        return f"downloading {name} failed: {err}"
    return None if checkpoint_cached(name) else f"{name} is incomplete after download"


def _tiny_config(config: EngineConfig, settings: Mapping[str, Any]) -> EngineConfig:
    """The tiny config, its checkpoints written if any role uses them; keeps the operator's other settings.

    A real profile's checkpoint overrides are dropped (they could not be loaded), but a
    role disabled with "" stays disabled.
    """
    from vlm_engine.tiny import tiny_checkpoints_write

    if config.profile == "tiny":
        tiny = config  # the operator may point some roles at their own tiny checkpoints
    else:
        fields = {key: value for key, value in settings.items() if key not in ROLE_FIELDS or value == ""}
        fields.pop("clip", None)  # CLIP cannot be disabled; "" means the default
        # The OCR reader's models ship inside its package: it stays real when the hub is out of reach.
        fields.setdefault("reader", config.reader)
        # Likewise the packaged MiniLM; a hub text encoder that could not be loaded gives way to it.
        fields["text"] = config.text if config.text in ("", PACKAGED_TEXT) else PACKAGED_TEXT
        tiny = EngineConfig.for_profile("tiny", tiny_dir=config.tiny_dir, device=config.device, **fields)
    if _uses_tiny_dir(tiny):
        tiny_checkpoints_write(tiny.tiny_dir)
    return tiny


def _uses_tiny_dir(config: EngineConfig) -> bool:
    prefix = config.tiny_dir.rstrip("/") + "/"
    parts = [part for parts in _role_checkpoint_parts(config).values() for part in parts]
    return bool(config.tiny_dir) and any(part.startswith(prefix) for part in parts)


def _role_checkpoint_parts(config: EngineConfig) -> dict[str, list[str]]:
    """Role field -> the checkpoints on disk it needs (a ``magic:`` generator names an LM and an embedder)."""
    from vlm_engine.registry import checkpoint_parts

    return {field: checkpoint_parts(ROLE_KINDS[field], name) for field, name in config.role_checkpoints().items()}


def _overrides_parse(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Convert string settings (environment variables) to the types EngineConfig declares."""
    types = {field.name: field.type for field in dataclasses.fields(EngineConfig)}
    parsed: dict[str, Any] = {}
    for key, value in overrides.items():
        name = FIELD_ALIASES.get(key, key)
        if name != key and name in overrides:
            raise ValueError(f"engine settings {key!r} and {name!r} name the same role; give one")
        if name not in types or name in ("profile", "tiny_dir", "device"):
            raise ValueError(f"unknown or non-overridable engine setting {name!r}")
        parsed[name] = _value_parse(name, value, str(types[name]))
    return parsed


def _value_parse(name: str, value: str, type_name: str) -> Any:
    converters: dict[str, type] = {"int": int, "float": float, "str": str}
    try:
        return converters[type_name](value)
    except ValueError as err:
        raise ValueError(f"engine setting {name}={value!r} is not a valid {type_name}") from err
