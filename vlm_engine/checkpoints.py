"""Checkpoint bookkeeping shared by every role: version strings, and safe publishing on disk."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Written into every checkpoint this package builds with random weights (the tiny ones), so a
# role knows at load time that its output is noise, whatever the directory is called.
RANDOM_WEIGHTS_MARKER = "random-weights.json"
# Files every checkpoint written by this package has once it is complete.
COMPLETE_MARKERS = ("config.json", "model.safetensors", "processor_config.json", RANDOM_WEIGHTS_MARKER)


def checkpoint_is_real(name_or_path: str) -> bool:
    """Whether a checkpoint holds trained weights: False for one this package built with random weights."""
    return not (Path(name_or_path) / RANDOM_WEIGHTS_MARKER).is_file()


def checkpoint_version(role: str, name_or_path: str) -> str:
    """``role:name@sha12`` — the name (directory basename or hub id) and the config's digest.

    The digest changes whenever the checkpoint does, so analyses name exactly what judged them.
    """
    path = Path(name_or_path)
    name = path.name if path.is_dir() else name_or_path
    return f"{role}:{name}@{_config_sha(name_or_path)}"


def _config_sha(name_or_path: str) -> str:
    from transformers.utils.hub import cached_file

    config_path = cached_file(name_or_path, "config.json", local_files_only=True)
    if config_path is None:
        return "unknown"
    return hashlib.sha256(Path(config_path).read_bytes()).hexdigest()[:12]


def checkpoint_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in COMPLETE_MARKERS)


def checkpoint_save(model: Any, processor: Any, target: Path) -> None:
    """Write a random-weight model and its processor to ``target``: aside first, then renamed into place.

    The checkpoint is marked as random (``RANDOM_WEIGHTS_MARKER``), so loading it never passes
    its output off as a finding.

    A web and a worker process may both start on a fresh disk; neither may ever read a
    half-written checkpoint, and the files must be readable by other users.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    processor.save_pretrained(staging)
    model.save_pretrained(staging)
    marker = {"random_weights": True, "model_type": str(getattr(model.config, "model_type", ""))}
    (staging / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker) + "\n")
    for path in staging.iterdir():
        path.chmod(0o644)  # transformers 5 writes model.safetensors as 0600
    _staging_publish(staging, target)


def _staging_publish(staging: Path, target: Path) -> None:
    if target.exists() and not checkpoint_complete(target):
        shutil.rmtree(target)  # left over from an interrupted older writer
    try:
        staging.rename(target)
    except OSError:
        # Another process published first; its files are identical (seeded).
        shutil.rmtree(staging)


def checkpoint_load(auto_class: Any, name_or_path: str, *, device: str, dtype: str,
                    local_files_only: bool = False) -> tuple[Any, Any]:
    """A model (through ``auto_class.from_pretrained``, in eval mode on ``device``) and its processor.

    Raises:
        OSError: the checkpoint cannot be found or read.
    """
    import torch
    from transformers import AutoProcessor

    torch_dtype = getattr(torch, dtype)  # EngineConfig allows only real torch dtype names
    model = auto_class.from_pretrained(name_or_path, dtype=torch_dtype, local_files_only=local_files_only)
    model.to(device).eval()
    processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]  # unannotated in transformers
        name_or_path, local_files_only=local_files_only
    )
    return model, processor
