"""Full-size random-weight shapes of the embedder families, and their rows in bench/engine.py.

Each shape is the published base checkpoint's (towers, widths, depths, heads, input side),
applied to the family's tiny checkpoint (`vlm_engine.tiny_embedders`): its config is widened
to the published shape, its image processor set to the published input size, and its tiny
tokenizer kept (as bench/architectures.py does: a smaller vocabulary shrinks only the
token-embedding lookup). The model is built in memory, fp32, never written to disk.

A row compares the engine's scoring of a batch (`Engine.analyze`, embedder only: no grounder,
generator, reader or text role) with the transformers reference called per post, per category:
the "zero-shot-image-classification" pipeline (the category's prompts plus the benign prompts,
as the engine scores), or for FLAVA, which has no contrastive logits in `FlavaModel` and so no
pipeline, the same per-category calls of `get_image_features` / `get_text_features` with its
global contrastive head's scale. The row also records the largest difference between the two
sides' category scores: rounding at full size; with --quick's 32 px checkpoints the engine decodes
the 640x480 JPEGs in draft mode (at a quarter of their side), so its pixels, and SigLIP's
sigmoids most visibly, differ from the reference's full decode.
"""
from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import ratio

# Published base checkpoints: family -> (hub id the shape copies, config overrides, image processor overrides).
_VIT_B16 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
_VIT_L14 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16}
_SQUARE_224 = {"size": {"height": 224, "width": 224}, "crop_size": {"height": 224, "width": 224}}
_CLIP_224 = {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}
_EFFICIENTNET_B7 = {"width_coefficient": 2.0, "depth_coefficient": 3.1, "kernel_sizes": [3, 3, 5, 3, 5, 5, 3],
                    "in_channels": [32, 16, 24, 40, 80, 112, 192], "out_channels": [16, 24, 40, 80, 112, 192, 320],
                    "strides": [1, 2, 2, 2, 1, 2, 1], "num_block_repeats": [1, 2, 2, 3, 3, 4, 1],
                    "expand_ratios": [1, 6, 6, 6, 6, 6, 6], "hidden_dim": 640, "depthwise_padding": []}
FAMILY_SHAPES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "siglip": ("google/siglip-base-patch16-224",
               {"vision_config": {**_VIT_B16, "image_size": 224, "patch_size": 16},
                "text_config": {**_VIT_B16, "projection_size": 768}},
               {"size": {"height": 224, "width": 224}}),
    "siglip2": ("google/siglip2-base-patch16-naflex",
                {"vision_config": {**_VIT_B16, "num_patches": 256, "patch_size": 16},
                 "text_config": {**_VIT_B16, "projection_size": 768}},
                {"max_num_patches": 256, "patch_size": 16}),
    "align": ("kakaobrain/align-base",
              {"vision_config": {**_EFFICIENTNET_B7, "image_size": 289}, "text_config": _VIT_B16,
               "projection_dim": 640},
              {"size": {"height": 289, "width": 289}, "crop_size": {"height": 289, "width": 289}}),
    "altclip": ("BAAI/AltCLIP",
                {"vision_config": {**_VIT_L14, "image_size": 224, "patch_size": 14},
                 "text_config": {**_VIT_L14, "project_dim": 768}, "projection_dim": 768},
                _CLIP_224),
    "chinese_clip": ("OFA-Sys/chinese-clip-vit-base-patch16",
                     {"vision_config": {**_VIT_B16, "image_size": 224, "patch_size": 16}, "text_config": _VIT_B16,
                      "projection_dim": 512},
                     _CLIP_224),
    "flava": ("facebook/flava-full",
              {"image_config": {**_VIT_B16, "image_size": 224, "patch_size": 16}, "text_config": _VIT_B16,
               "multimodal_config": {**_VIT_B16, "num_hidden_layers": 6}, "hidden_size": 768,
               "projection_dim": 768},
              _SQUARE_224),
}
SIGMOID_FAMILIES = ("siglip", "siglip2")


def family_build(family: str, tiny_dir: Path, *, full_size: bool) -> tuple[Any, Any]:
    """(fp32 model, processor) of `family`: its tiny checkpoint, widened to the published shape if `full_size`."""
    import torch
    from transformers import AutoModel, AutoProcessor

    from vlm_engine.registry import families

    writer = families("embedder")[family].tiny
    assert writer is not None
    path = writer(tiny_dir)
    processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
    if not full_size:
        return AutoModel.from_pretrained(str(path), local_files_only=True).eval(), processor
    _, config_overrides, image_overrides = FAMILY_SHAPES[family]
    config = config_widened(path, config_overrides)
    for name, setting in image_overrides.items():
        setattr(processor.image_processor, name, setting)
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval(), processor


def config_widened(path: Path, overrides: dict[str, Any]) -> Any:
    """The checkpoint's config with `overrides`: attribute -> value, or sub-config name -> {attribute: value}."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    for key, value in overrides.items():
        if isinstance(value, dict):
            for name, setting in value.items():
                setattr(getattr(config, key), name, setting)
        else:
            setattr(config, key, value)
    return config


def family_row(family: str, model: Any, processor: Any, posts: Sequence[Any], policy: Any,
               *, warm_up_policy: Any, repeats: int) -> dict[str, Any]:
    """Engine (whole batch) against the reference (per post, per category), same model and posts."""
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine
    from vlm_engine.registry import families

    adapter = families("embedder")[family].adapter
    role = adapter(model, processor, version=f"{family}:bench", device="cpu", real=False)
    # text_weight 0: the joint embedding is the image's, as the reference scores the image alone (the
    # engine still embeds each post's text, a cost the reference does not pay).
    config = EngineConfig(profile="small", clip=family, grounder="", generator="", reader="", look_closer=2.0,
                          batch_size=8, text_weight=0.0)
    engine = Engine(config, role)
    engine.analyze(posts[:1], warm_up_policy)
    samples, analyses = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        analyses = engine.analyze(posts, policy)
        samples.append(time.perf_counter() - start)
    engine_s = min(samples)
    reference = _Reference(family, model, processor)
    reference.scores(posts[0], warm_up_policy)
    start = time.perf_counter()
    expected = [reference.scores(post, policy) for post in posts]
    reference_s = time.perf_counter() - start
    difference = max(abs(analysis.scores[slug] - scores[slug])
                     for analysis, scores in zip(analyses, expected) for slug in scores)
    return {"checkpoint_shape": FAMILY_SHAPES[family][0], "probabilities": "sigmoid per label"
            if family in SIGMOID_FAMILIES else "softmax across labels",
            "engine_posts_per_s": len(posts) / engine_s, "engine_samples_s": samples,
            "engine_timings_ms": dict(analyses[0].timings_ms),
            "reference_posts_per_s": len(posts) / reference_s, "reference_s": reference_s,
            "ratio": ratio(len(posts) / engine_s, len(posts) / reference_s),
            "max_score_difference": difference}


class _Reference:
    """Per post: decode, then one transformers call per category, as bench.engine's CLIP reference does."""

    def __init__(self, family: str, model: Any, processor: Any) -> None:
        self.family = family
        self.sigmoid = family in SIGMOID_FAMILIES
        self.model = model
        self.processor = processor
        self.pipeline = None
        if family != "flava":
            from transformers import pipeline

            self.pipeline = pipeline("zero-shot-image-classification", model=model, tokenizer=processor.tokenizer,
                                     image_processor=processor.image_processor, processor=processor, device="cpu")

    def scores(self, post: Any, policy: Any) -> dict[str, float]:
        """Category slug -> score: its prompts' softmax share, or its best prompt's sigmoid (SigLIP)."""
        image = Image.open(io.BytesIO(post.image)).convert("RGB")
        result = {}
        for category in policy.categories:
            labels = list(category.prompts + policy.benign_prompts)
            probs = self._label_probs(image, labels)
            own = [probs[prompt] for prompt in category.prompts]
            result[category.slug] = max(own) if self.sigmoid else sum(own)
        return result

    def _label_probs(self, image: Image.Image, labels: list[str]) -> dict[str, float]:
        if self.pipeline is not None:
            rows = self.pipeline(image, candidate_labels=labels, hypothesis_template="{}")
            return {row["label"]: float(row["score"]) for row in rows}
        import torch

        with torch.inference_mode():
            pixels = self.processor.image_processor(images=[image], return_tensors="pt")
            tokens = self.processor.tokenizer(labels, padding=True, return_tensors="pt")
            image_emb = self.model.get_image_features(**pixels).pooler_output[:, 0, :]
            text_emb = self.model.get_text_features(**tokens).pooler_output[:, 0, :]
            image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
            text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
            probs = (image_emb @ text_emb.T * self.model.logit_scale.exp()).softmax(dim=-1)[0]
        return dict(zip(labels, (float(value) for value in probs)))


def families_rows(families_wanted: Sequence[str], tiny_dir: Path, posts: Sequence[Any], policy: Any, *,
                  warm_up_policy: Any, full_size: bool, repeats: int) -> dict[str, Any]:
    """family -> row (or {"failed": reason}); each model is freed before the next is built."""
    rows: dict[str, Any] = {}
    for family in families_wanted:
        try:
            model, processor = family_build(family, tiny_dir, full_size=full_size)
            rows[family] = family_row(family, model, processor, posts, policy, warm_up_policy=warm_up_policy,
                                      repeats=repeats)
            del model
        except (RuntimeError, ValueError, OSError) as err:
            rows[family] = {"failed": f"{type(err).__name__}: {err}"}
    return rows

