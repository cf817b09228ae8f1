"""Whether a torch device string names a device this host has, told before any model is loaded."""
from __future__ import annotations

import importlib.util

ENGINE_EXTRA = 'pip install "django-vlm-moderation[engine]"'


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run the models on this host, or None when it can.

    Args:
        device: a torch device string ("cpu", "cuda", "cuda:1", "mps").

    Returns:
        One sentence for the operator, or None.
    """
    if importlib.util.find_spec("torch") is None:
        return f"torch is not installed here; a worker needs the engine extra ({ENGINE_EXTRA})"
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        return f"{device!r} is not a torch device ({exc})"
    if parsed.type == "cuda":
        return _cuda_problem(device, parsed.index)
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        return f"device {device!r} needs Apple's Metal (MPS), which this host does not have"
    return None


def _cuda_problem(device: str, index: int | None) -> str | None:
    import torch

    if torch.version.cuda is None:
        return (f"device {device!r} needs CUDA, but the installed torch {torch.__version__} is a CPU-only "
                "build; use the device 'cpu' or install a CUDA build of torch")
    if not torch.cuda.is_available():
        return (f"device {device!r} needs CUDA, but torch {torch.__version__} finds no NVIDIA GPU or driver "
                "on this host; use the device 'cpu' here")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        return f"device {device!r} does not exist: this host has {count} CUDA device(s)"
    return None
