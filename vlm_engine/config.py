"""Engine configuration: which checkpoints, on which device, in which precision."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

PROFILES = ("tiny", "small", "large")
DTYPES = ("float32", "bfloat16", "float16")
# Default CLIP checkpoint per real profile; "tiny" lives under the caller's tiny_dir.
PROFILE_CLIP = {
    "small": "openai/clip-vit-base-patch32",
    "large": "openai/clip-vit-large-patch14-336",
}


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs to load its models; validated on construction.

    Raises:
        ValueError: an unknown profile or dtype, or an out-of-range number.
    """

    profile: str = "tiny"
    clip: str = ""  # model id or local path of the CLIP checkpoint
    device: str = "cpu"
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16"
    batch_size: int = 16
    text_weight: float = 0.5  # weight of the post-text embedding in the joint embedding
    tiny_dir: str = ""  # where the tiny checkpoints live

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown engine profile {self.profile!r}; expected one of {', '.join(PROFILES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if not self.device:
            raise ValueError("device must not be empty (e.g. 'cpu', 'cuda', 'cuda:1')")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.text_weight <= 1.0:
            raise ValueError(f"text_weight must be within [0, 1], got {self.text_weight}")

    @classmethod
    def for_profile(cls, profile: str, *, tiny_dir: str = "", **overrides: Any) -> EngineConfig:
        """Build the config of a profile, with its default checkpoint, then apply overrides.

        Raises:
            ValueError: unknown profile or override name, or "tiny" without tiny_dir or clip.
        """
        unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown engine setting(s): {', '.join(unknown)}")
        if profile not in PROFILES:
            raise ValueError(f"unknown engine profile {profile!r}; expected one of {', '.join(PROFILES)}")
        clip = overrides.pop("clip", "") or _profile_clip(profile, tiny_dir)
        return cls(profile=profile, clip=clip, tiny_dir=tiny_dir, **overrides)


def _profile_clip(profile: str, tiny_dir: str) -> str:
    if profile != "tiny":
        return PROFILE_CLIP[profile]
    if not tiny_dir:
        raise ValueError("the 'tiny' profile needs tiny_dir (where the tiny checkpoints live)")
    return f"{tiny_dir.rstrip('/')}/clip"
