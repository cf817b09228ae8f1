"""Full-size random-weight checkpoints of the small and large profiles, built offline for the benchmarks.

The hub is not reachable from the benchmark machines, and speed depends on shapes, not
weights: each builder below reproduces the published checkpoint's architecture (layers,
widths, heads, image and patch sizes) with random weights, and pairs it with a processor
of the real input size. Tokenizers are the tiny builders' (`vlm_engine.tiny*`), so the
vocabulary has ~750 tokens instead of ~49k: that shrinks only the token-embedding tables
(a lookup, no FLOPs) and the generator's LM head (one (hidden x vocab) matmul per new
token: 28 M of SmolVLM-256M's ~160 M per-token multiply-adds, 100 M of SmolVLM-Instruct's
~1.8 G), so the generator's decode steps are slightly cheaper than the real ones; every
other cost is the real one.

The generator's processor does not split images into tiles by default: the published
SmolVLM processors resize a 640x480 photo to 2048x1536 (256M) or 1536x1152 (Instruct) and
encode 12 tiles plus a global view, 13x the vision work per prompt, which a 2-core CPU
cannot benchmark in minutes. Pass `image_splitting=True` for the published behaviour.

Run: .venv/bin/python -m bench.architectures small [large]   (writes var/bench-models/)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_engine.checkpoints import checkpoint_complete, checkpoint_save

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "var" / "bench-models"
SEED = 0


@dataclass(frozen=True)
class Tower:
    """One transformer stack: width, MLP width, depth and heads."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int = 0  # 0: as many as `heads` (no grouped-query attention)

    def config(self) -> dict[str, int]:
        return {"hidden_size": self.hidden, "intermediate_size": self.intermediate,
                "num_hidden_layers": self.layers, "num_attention_heads": self.heads}


@dataclass(frozen=True)
class DualEncoder:
    """A CLIP or OWLv2 shape: vision and text towers, input side, patch side, projection width."""

    vision: Tower
    text: Tower
    image_size: int
    patch_size: int
    projection: int


@dataclass(frozen=True)
class Generator:
    """An Idefics3 (SmolVLM) shape: SigLIP vision tower, Llama text model, pixel-shuffle factor."""

    vision: Tower
    text: Tower
    image_size: int
    patch_size: int
    scale_factor: int
    rope_theta: float = field(default=100_000.0)

    @property
    def image_seq_len(self) -> int:
        """<image> tokens per tile: the patch grid, pixel-shuffled by scale_factor² (64 for SmolVLM-256M)."""
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2


CLIP_B32 = DualEncoder(Tower(768, 3072, 12, 12), Tower(512, 2048, 12, 8), image_size=224, patch_size=32,
                       projection=512)  # openai/clip-vit-base-patch32
CLIP_L14_336 = DualEncoder(Tower(1024, 4096, 24, 16), Tower(768, 3072, 12, 12), image_size=336, patch_size=14,
                           projection=768)  # openai/clip-vit-large-patch14-336
OWLV2_B16 = DualEncoder(Tower(768, 3072, 12, 12), Tower(512, 2048, 12, 8), image_size=960, patch_size=16,
                        projection=512)  # google/owlv2-base-patch16-ensemble
OWLV2_L14 = DualEncoder(Tower(1024, 4096, 24, 16), Tower(768, 3072, 12, 12), image_size=1008, patch_size=14,
                        projection=768)  # google/owlv2-large-patch14-ensemble
SMOLVLM_256M = Generator(Tower(768, 3072, 12, 12), Tower(576, 1536, 30, 9, kv_heads=3), image_size=512,
                         patch_size=16, scale_factor=4)  # HuggingFaceTB/SmolVLM-256M-Instruct
# Salesforce/blip-itm-base-coco: ViT-B/16 at 384, BERT-base text encoder cross-attending to it.
BLIP_ITM_BASE = DualEncoder(Tower(768, 3072, 12, 12), Tower(768, 3072, 12, 12), image_size=384, patch_size=16,
                            projection=256)
# Salesforce/blip-itm-large-coco: ViT-L/16 at 384, the same BERT-base text encoder.
BLIP_ITM_LARGE = DualEncoder(Tower(1024, 4096, 24, 16), Tower(768, 3072, 12, 12), image_size=384, patch_size=16,
                             projection=256)
SMOLVLM_2B = Generator(Tower(1152, 4304, 27, 16), Tower(2048, 8192, 24, 32, kv_heads=32), image_size=384,
                       patch_size=14, scale_factor=3, rope_theta=273_768.0)  # HuggingFaceTB/SmolVLM-Instruct

# The verifier of each profile (vlm_engine.config's default), kept apart from PROFILE_ARCHITECTURES so that
# the benchmarks comparing the three pipeline roles do not build it.
VERIFIER_ARCHITECTURES = {"small": ("blip-itm-base-coco", BLIP_ITM_BASE), "large": ("blip-itm-large-coco", BLIP_ITM_LARGE)}
# Profile -> role -> (cache directory name, shape); the roles and profiles of vlm_engine.config.
PROFILE_ARCHITECTURES: dict[str, dict[str, tuple[str, DualEncoder | Generator]]] = {
    "small": {"clip": ("clip-vit-base-patch32", CLIP_B32), "grounder": ("owlv2-base-patch16", OWLV2_B16),
              "generator": ("smolvlm-256m-instruct", SMOLVLM_256M)},
    "large": {"clip": ("clip-vit-large-patch14-336", CLIP_L14_336), "grounder": ("owlv2-large-patch14", OWLV2_L14),
              "generator": ("smolvlm-instruct", SMOLVLM_2B)},
}


def clip_build(shape: DualEncoder) -> tuple[Any, Any]:
    """A random-weight CLIPModel of `shape` and its processor (resize + centre crop to the input side)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from vlm_engine.tiny import _tiny_processor

    tokenizer = _tiny_processor().tokenizer
    side = shape.image_size
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer,
    )
    config = CLIPConfig(text_config={**_text_tower(shape, tokenizer), "projection_dim": shape.projection},
                        vision_config={**_vision_tower(shape), "projection_dim": shape.projection},
                        projection_dim=shape.projection)
    torch.manual_seed(SEED)
    return CLIPModel(config), processor


def blip_itm_build(shape: DualEncoder) -> tuple[Any, Any]:
    """A random-weight BlipForImageTextRetrieval of `shape` and its processor (resize to the input side)."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessorPil, BlipProcessor

    from vlm_engine.tiny_verifier import _bert_tokenizer

    tokenizer = _bert_tokenizer(512)
    side = shape.image_size
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": side, "width": side}),
                              tokenizer=tokenizer)
    text = {**shape.text.config(), "vocab_size": len(tokenizer), "max_position_embeddings": 512,
            "encoder_hidden_size": shape.vision.hidden, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id,
            "sep_token_id": tokenizer.sep_token_id}
    config = BlipConfig(text_config=text, vision_config=_vision_tower(shape), image_text_hidden_size=shape.projection)
    torch.manual_seed(SEED)
    return BlipForImageTextRetrieval(config), processor


def owlv2_build(shape: DualEncoder) -> tuple[Any, Any]:
    """A random-weight Owlv2ForObjectDetection of `shape` and its processor (pad to square, resize)."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    from vlm_engine.tiny_grounder import _heads_scale_down, _tiny_grounder_processor

    tokenizer = _tiny_grounder_processor().tokenizer
    side = shape.image_size
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": side, "width": side}),
                               tokenizer=tokenizer)
    text = {**_text_tower(shape, tokenizer), "pad_token_id": tokenizer.pad_token_id}
    config = Owlv2Config(text_config=text, vision_config=_vision_tower(shape), projection_dim=shape.projection)
    torch.manual_seed(SEED)
    model = Owlv2ForObjectDetection(config)
    _heads_scale_down(model)  # unsaturated scores, so thresholds and NMS see realistic box counts
    return model, processor


def idefics3_build(shape: Generator, *, image_splitting: bool = False) -> tuple[Any, Any]:
    """A random-weight Idefics3ForConditionalGeneration of `shape` and its processor.

    Args:
        shape: the vision, text and pixel-shuffle shapes.
        image_splitting: split images into tiles of the vision tower's side plus a global
            view, as the published SmolVLM processors do (see the module docstring).
    """
    import torch
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                              Idefics3Processor)

    from vlm_engine.tiny_generator import CHAT_TEMPLATE, _tiny_generator_processor

    tokenizer = _tiny_generator_processor().tokenizer
    tile = {"longest_edge": shape.image_size}
    edge = {"longest_edge": 4 * shape.image_size} if image_splitting else tile
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=image_splitting, size=edge, max_image_size=tile)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=shape.image_seq_len, chat_template=CHAT_TEMPLATE)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    text = {**shape.text.config(), **ids, "model_type": "llama", "vocab_size": len(tokenizer),
            "num_key_value_heads": shape.text.kv_heads or shape.text.heads, "max_position_embeddings": 8192,
            "rope_theta": shape.rope_theta}
    vision = {**shape.vision.config(), "image_size": shape.image_size, "patch_size": shape.patch_size}
    config = Idefics3Config(text_config=text, vision_config=vision, scale_factor=shape.scale_factor,
                            image_token_id=processor.image_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    return Idefics3ForConditionalGeneration(config), processor


def _vision_tower(shape: DualEncoder) -> dict[str, int]:
    return {**shape.vision.config(), "image_size": shape.image_size, "patch_size": shape.patch_size}


def _text_tower(shape: DualEncoder, tokenizer: Any) -> dict[str, Any]:
    # CLIP and OWLv2 pool at the end-of-text token, so the ids must be the tokenizer's.
    return {**shape.text.config(), "vocab_size": len(tokenizer), "max_position_embeddings": tokenizer.model_max_length,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.eos_token_id}


def architecture_build(profile: str, role: str, *, image_splitting: bool = False) -> tuple[Any, Any]:
    """(model, processor) of a profile's role, in memory, fp32 on the CPU (or inside a `torch.device` block).

    Raises:
        KeyError: an unknown profile or role.
    """
    if role == "verifier":
        return blip_itm_build(VERIFIER_ARCHITECTURES[profile][1])
    _, shape = PROFILE_ARCHITECTURES[profile][role]
    if isinstance(shape, Generator):
        return idefics3_build(shape, image_splitting=image_splitting)
    return clip_build(shape) if role == "clip" else owlv2_build(shape)


def architecture_write(profile: str, role: str, *, directory: Path = MODELS_DIR, image_splitting: bool = False) -> Path:
    """Write a profile's role checkpoint under `directory`, unless it is already there; returns its path.

    The result loads with `from_pretrained` (model and processor), so the engine and the
    transformers pipelines read the very same files.
    """
    name, _ = PROFILE_ARCHITECTURES[profile][role]
    target = Path(directory) / (f"{name}-split" if role == "generator" and image_splitting else name)
    if not checkpoint_complete(target):
        model, processor = architecture_build(profile, role, image_splitting=image_splitting)
        checkpoint_save(model, processor, target)
    return target


def profile_write(profile: str, *, directory: Path = MODELS_DIR, image_splitting: bool = False) -> dict[str, Path]:
    """Every role's checkpoint of a profile: role ("clip", "grounder", "generator") -> directory."""
    return {role: architecture_write(profile, role, directory=directory, image_splitting=image_splitting)
            for role in PROFILE_ARCHITECTURES[profile]}


def main(argv: list[str]) -> int:
    """`python -m bench.architectures small [large]`: write the profiles' checkpoints and print where."""
    if not argv or set(argv) - set(PROFILE_ARCHITECTURES):
        print(f"usage: python -m bench.architectures {{{'|'.join(PROFILE_ARCHITECTURES)}}}...", file=sys.stderr)
        return 2
    for profile in argv:
        for role, path in profile_write(profile).items():
            print(f"{profile} {role}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
