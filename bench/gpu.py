"""GPU benchmark: the small and large profiles, full size, bf16 on CUDA, against the transformers pipelines.

Run (CUDA, under 8 minutes): python -m bench.gpu [--profiles small large] [--peak-tflops 989]
Dry run (CPU, tiny checkpoints, fp32, tiny batches; every code path): python -m bench.gpu --dry-run
Writes <results-dir>/gpu.json, or gpu-dry-run.json for --dry-run (default results dir bench/results).

Per profile, on the same 640x480 JPEG posts and in the same run:
  roles, images/s: the engine (bf16, --batch-size posts per call) vs the pipelines (fp32, batch 1)
    clip      Engine.analyze with CLIP only   vs zero-shot-image-classification once per category
    ground    Engine.ground, 20 phrases       vs zero-shot-object-detection with the same 20 phrases
    generate  Engine.caption                  vs image-text-to-text with the caption prompt
    verify    VerifierRole.match, every prompt of every category (each flagged, as at look_closer 0)
              vs BlipForImageTextRetrieval called per (image, prompt) pair, as its model card shows
  cascade, images/s: Engine.analyze, all roles (look_closer 0) and the cascade (look_closer at the
    median first-pass top score, so about half look closer) vs every pipeline per post
    (bench.engine.Reference, the cascade derived from its per-post stage timings)
  clip_encoder: the engine's bf16 CLIP image tower (projection included) on --encoder-batch
    random images, as images/s and as a fraction of the GPU's bf16 dense peak.
Targets (issue 7.3): clip >= 30x, ground >= 20x the reference; the encoder >= 35% of peak.

CLIP image-encoder FLOPs per image (`clip_encoder_flops`), multiply-add = 2 FLOPs, with
T = (image/patch)^2 + 1 tokens, width d, MLP width m, L layers, projection p, patch P:
    patch embedding   2 * (3 P^2 d) * (T - 1)
    per layer         2 * T * (4 d^2 + 2 d m)   (q, k, v, out and the two MLP matmuls)
                    + 4 * T^2 * d               (q k^T and attention x v)
    projection        2 * d * p                 (the pooled token only)
Layer norms, softmax, GELU and biases are elementwise (under 1%) and not counted, so the
peak fraction is slightly understated. ViT-B/32 at 224: 8.8 GFLOPs; ViT-L/14 at 336: 382 GFLOPs.
Models are built with random weights directly on the device (bench/architectures.py), in
fp32 for the reference; the engine gets a bf16 copy of the same weights.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.architectures import architecture_build
from bench.common import BenchmarkFailed, ratio, results_write, summary
from bench.engine import (SIDE_ERRORS, Reference, bench_policy, bench_posts, engine_warm_up,
                          reference_cascade_posts_per_s)
from vlm_engine.cascade import policy_phrases
from vlm_engine.clip import ClipRole
from vlm_engine.config import TINY_SUBDIRS, EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.generation import PROMPTS, GeneratorRole
from vlm_engine.grounding import GrounderRole
from vlm_engine.types import Policy, PostInput
from vlm_engine.verification import VERIFIER_FAMILIES, VerifierRole

ROLE_CLASSES: dict[str, Any] = {"clip": ClipRole, "grounder": GrounderRole, "generator": GeneratorRole}
VERSION_PREFIXES = {"clip": "clip", "grounder": "owlv2", "generator": "vlm"}
# Ten more phrases after the default policy's ten: the "grounding with 20 phrases".
EXTRA_PHRASES = ("knife", "gun", "syringe", "pills", "cigarette", "bottle", "flag", "banner", "tattoo", "mask")
TARGETS = {"clip": 30.0, "ground": 20.0, "clip_encoder_fraction_of_peak": 0.35}
MAX_NEW_TOKENS = 8


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each measurement does: real runs on the GPU, or the dry run's tiny batches."""

    engine_posts: int
    reference_posts: int
    batch_size: int
    encoder_batch: int
    encoder_repeats: int
    questions: int | None  # policy questions kept for the full analysis; None: all of the default policy's
    ground_phrases: int  # phrases of the grounding role's measurement (the target is for 20)


REAL = Sizes(engine_posts=64, reference_posts=4, batch_size=16, encoder_batch=256, encoder_repeats=10, questions=None,
             ground_phrases=20)
DRY_RUN = Sizes(engine_posts=2, reference_posts=2, batch_size=2, encoder_batch=2, encoder_repeats=2, questions=1,
                ground_phrases=4)


def clip_encoder_flops(*, image_size: int, patch_size: int, hidden: int, intermediate: int, layers: int,
                       projection: int) -> float:
    """FLOPs of one image through CLIP's vision tower and projection (formula in the module docstring)."""
    patches = (image_size // patch_size) ** 2
    tokens = patches + 1
    patch_embedding = 2 * (3 * patch_size**2 * hidden) * patches
    per_layer = 2 * tokens * (4 * hidden**2 + 2 * hidden * intermediate) + 4 * tokens**2 * hidden
    return float(patch_embedding + layers * per_layer + 2 * hidden * projection)


def clip_model_flops(model: Any) -> float:
    vision = model.config.vision_config
    return clip_encoder_flops(image_size=vision.image_size, patch_size=vision.patch_size, hidden=vision.hidden_size,
                              intermediate=vision.intermediate_size, layers=vision.num_hidden_layers,
                              projection=model.config.projection_dim)


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: str) -> float:
    """Wall time of one call, the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def models_load(profile: str, *, dry_run: bool, tiny_dir: Path, device: str) -> dict[str, tuple[Any, Any]]:
    """role -> (fp32 model on `device`, processor): the profile built on the device, or the tiny checkpoints."""
    import torch

    if dry_run:
        roles = {role: ROLE_CLASSES[role].load(str(tiny_dir / TINY_SUBDIRS[role]), device=device, dtype="float32")
                 for role in ROLE_CLASSES}
        verifier = VerifierRole.load(str(tiny_dir / TINY_SUBDIRS["verifier"]), device=device, dtype="float32")
        return {**{role: (loaded.model, loaded.processor) for role, loaded in roles.items()},
                "verifier": (verifier.adapter.model, verifier.adapter.processor)}
    models = {}
    for role in [*ROLE_CLASSES, "verifier"]:
        with torch.device(device):
            model, processor = architecture_build(profile, role)
        models[role] = (model.eval(), processor)
    return models


def engine_build(models: Mapping[str, tuple[Any, Any]], config: EngineConfig) -> Engine:
    """The engine over a `config.dtype` copy of each fp32 model (same weights as the reference's)."""
    import torch

    dtype = getattr(torch, config.dtype)
    roles = {role: ROLE_CLASSES[role](copy.deepcopy(model).to(dtype).eval(), processor,
                                      version=f"{VERSION_PREFIXES[role]}:random@bench", device=config.device)
             for role, (model, processor) in models.items() if role in ROLE_CLASSES}
    model, processor = models["verifier"]
    adapter = VERIFIER_FAMILIES[model.config.model_type](copy.deepcopy(model).to(dtype).eval(), processor,
                                                         device=config.device)
    return Engine(config, roles["clip"], grounder=roles["grounder"], generator=roles["generator"],
                  verifier=VerifierRole(adapter, version="itm:random@bench"))


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def engine_images_per_s(call: Callable[[Sequence[PostInput]], object], posts: Sequence[PostInput],
                        sizes: Sizes, device: str) -> dict[str, Any]:
    """Warm up on one batch, then time `call` over every batch of `posts`; images/s over the whole run."""
    batches = chunks(posts, sizes.batch_size)
    call(batches[0])
    samples = [seconds(lambda batch=batch: call(batch), device) for batch in batches]
    return {"images_per_s": len(posts) / sum(samples), "batch_samples_s": samples}


def reference_images_per_s(call: Callable[[PostInput], object], posts: Sequence[PostInput],
                           device: str) -> dict[str, Any]:
    """Warm up on one post, then time `call` post by post (batch 1)."""
    call(posts[0])
    samples = [seconds(lambda post=post: call(post), device) for post in posts]
    return {"images_per_s": len(posts) / sum(samples), "samples_s": samples}


def roles_measure(engine: Engine, reference: Reference, posts: Sequence[PostInput], policy: Policy,
                  phrases: Sequence[str], sizes: Sizes, device: str) -> dict[str, Any]:
    """images/s of each role, engine vs reference, with the reference's ratio target where the issue sets one."""
    clip_only = Engine(dataclasses.replace(engine.config, look_closer=2.0), engine.clip)
    images = {post.key: _image(post) for post in posts[: sizes.reference_posts]}
    verifier = engine.verifier
    assert verifier is not None
    prompts = [prompt for category in policy.categories for prompt in category.prompts]
    engine_calls: dict[str, Callable[[Sequence[PostInput]], object]] = {
        "clip": lambda batch: clip_only.analyze(batch, policy),
        "ground": lambda batch: engine.ground([(post, phrases) for post in batch]),
        "generate": lambda batch: engine.caption([(post, None) for post in batch]),
        "verify": lambda batch: verifier.match([_image(post) for post in batch], [prompts] * len(batch)),
    }
    reference_calls: dict[str, Callable[[PostInput], object]] = {
        "clip": lambda post: reference.classify(images[post.key], policy),
        "ground": lambda post: reference.detect(images[post.key], phrases),
        "generate": lambda post: reference.answer(images[post.key], PROMPTS["caption"]),
        "verify": lambda post: reference.verify(images[post.key], prompts),
    }
    return {role: _compared(engine_images_per_s(engine_calls[role], posts, sizes, device),
                            reference_images_per_s(reference_calls[role], posts[: sizes.reference_posts], device),
                            TARGETS.get(role))
            for role in engine_calls}


def _image(post: PostInput) -> Any:
    import io

    from PIL import Image

    assert post.image is not None
    return Image.open(io.BytesIO(post.image)).convert("RGB")


def _compared(engine: dict[str, Any], reference: dict[str, Any], target: float | None) -> dict[str, Any]:
    times = ratio(engine["images_per_s"], reference["images_per_s"])
    verdict = {} if target is None else {"target": target, "meets_target": times >= target}
    return {"engine": engine, "reference": reference, "ratio": times, **verdict}


def cascade_measure(engine: Engine, reference: Reference, posts: Sequence[PostInput], policy: Policy,
                    sizes: Sizes, device: str) -> dict[str, Any]:
    """Full analysis, all roles and the cascade, engine batches vs the reference post by post."""
    clip_only = Engine(dataclasses.replace(engine.config, look_closer=2.0), engine.clip)
    tops = [max(a.scores.values()) for batch in chunks(posts, sizes.batch_size)
            for a in clip_only.analyze(batch, policy)]
    threshold = statistics.median(tops)
    cascade = Engine(dataclasses.replace(engine.config, look_closer=threshold), engine.clip,
                     grounder=engine.grounder, generator=engine.generator, verifier=engine.verifier)
    engine_warm_up(engine, posts[0], policy)
    all_roles = engine_images_per_s(lambda batch: engine.analyze(batch, policy), posts, sizes, device)
    cascaded = engine_images_per_s(lambda batch: cascade.analyze(batch, policy), posts, sizes, device)
    reference_posts = posts[: sizes.reference_posts]
    reference.warm_up(reference_posts[0], policy)
    per_post = [reference.post(post, policy) for post in reference_posts]
    chosen = [row for row, top in enumerate(tops[: len(reference_posts)]) if top >= threshold]
    reference_all = len(per_post) / (sum(sum(stages.values()) for stages in per_post) / 1000.0)
    reference_cascade = reference_cascade_posts_per_s(per_post, chosen)
    return {
        "look_closer": threshold, "looked_closer_fraction": sum(top >= threshold for top in tops) / len(tops),
        "all_roles": {"engine": all_roles, "reference_images_per_s": reference_all,
                      "ratio": ratio(all_roles["images_per_s"], reference_all)},
        "cascade": {"engine": cascaded, "reference_images_per_s": reference_cascade,
                    "ratio": ratio(cascaded["images_per_s"], reference_cascade)},
        "reference_per_post_ms": per_post,
    }


def encoder_measure(clip: ClipRole, sizes: Sizes, device: str, peak_tflops: float) -> dict[str, Any]:
    """The engine's CLIP image tower on random pixels: images/s, achieved TFLOP/s, fraction of the peak."""
    import torch

    side = clip.image_size
    pixels = torch.randn(sizes.encoder_batch, 3, side, side, device=device, dtype=clip.model.dtype)

    def forward() -> None:
        with torch.inference_mode():
            clip.model.get_image_features(pixel_values=pixels)

    for _ in range(2):
        forward()  # warm-up: kernels chosen, memory pooled
    samples = [seconds(forward, device) for _ in range(sizes.encoder_repeats)]
    flops = clip_model_flops(clip.model)
    images_per_s = sizes.encoder_batch / statistics.median(samples)
    achieved = flops * images_per_s / 1e12
    return {"batch": sizes.encoder_batch, "dtype": str(clip.model.dtype).removeprefix("torch."),
            "flops_per_image": flops, "images_per_s": images_per_s, "achieved_tflops": achieved,
            "peak_tflops": peak_tflops, "fraction_of_peak": achieved / peak_tflops,
            "target": TARGETS["clip_encoder_fraction_of_peak"],
            "meets_target": achieved / peak_tflops >= TARGETS["clip_encoder_fraction_of_peak"],
            "samples_s": samples, "summary_s": summary(samples)}


def profile_run(profile: str, args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Every measurement of one profile; the models are freed before the next profile is built."""
    device, dtype = ("cpu", "float32") if args.dry_run else (args.device, "bfloat16")
    models = models_load(profile, dry_run=args.dry_run, tiny_dir=args.tiny_dir, device=device)
    config = EngineConfig(profile=profile, clip="in-memory", grounder="in-memory", generator="in-memory",
                          verifier="in-memory",
                          device=device, dtype=dtype, batch_size=sizes.batch_size, look_closer=0.0,
                          max_new_tokens=MAX_NEW_TOKENS)
    engine = engine_build(models, config)
    reference = Reference.load(models, device=device, max_new_tokens=MAX_NEW_TOKENS)
    posts = bench_posts(sizes.engine_posts)
    policy = bench_policy(phrases=None, questions=sizes.questions)
    phrases = [*policy_phrases(policy), *EXTRA_PHRASES][: sizes.ground_phrases]
    _progress(f"{profile}: roles")
    roles = roles_measure(engine, reference, posts, policy, phrases, sizes, device)
    _progress(f"{profile}: cascade")
    cascade = cascade_measure(engine, reference, posts, policy, sizes, device)
    _progress(f"{profile}: CLIP image encoder")
    encoder = encoder_measure(engine.clip, sizes, device, args.peak_tflops)
    return {"device": device, "dtype": dtype, "reference_dtype": "float32", "grounding_phrases": len(phrases),
            "roles": roles, "full": cascade, "clip_encoder": encoder}


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def profile_run_recorded(profile: str, args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """`profile_run`, a failure recorded instead of raised; the device memory is released either way."""
    try:
        return profile_run(profile, args, sizes)
    except SIDE_ERRORS as err:
        print(f"{profile} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return {"failed": f"{type(err).__name__}: {err}"}
    finally:
        _device_memory_release(args.device)


def _device_memory_release(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny checkpoints, CPU, fp32, tiny batches")
    parser.add_argument("--profiles", nargs="+", default=["small", "large"], choices=["small", "large"])
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak (H100 SXM and H200: 989)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--tiny-dir", type=Path, default=Path("var/bench-models/tiny"),
                        help="where --dry-run writes and reads the tiny checkpoints")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = arguments(argv)
    sizes = DRY_RUN if args.dry_run else REAL
    if args.dry_run:
        from vlm_engine.tiny import tiny_checkpoints_write

        tiny_checkpoints_write(args.tiny_dir)
    elif not _cuda_available():
        raise SystemExit("no CUDA device: run with --dry-run on a machine without a GPU")
    start = time.perf_counter()
    profiles = {profile: profile_run_recorded(profile, args, sizes) for profile in args.profiles}
    payload = {"command": " ".join(["python -m bench.gpu", *(sys.argv[1:] if argv is None else argv)]),
               "dry_run": args.dry_run, "sizes": dataclasses.asdict(sizes), "gpu": _gpu_name(args),
               "wall_s": time.perf_counter() - start, "profiles": profiles}
    path = results_write("gpu-dry-run" if args.dry_run else "gpu", payload, args.results_dir)
    failed = [profile for profile, result in profiles.items() if "failed" in result]
    if failed:
        raise BenchmarkFailed(f"{', '.join(failed)} failed; no ratio reported for it (see {path})")
    print("; ".join(_profile_line(profile, result) for profile, result in profiles.items()) + f"; wrote {path}")


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_name(args: argparse.Namespace) -> str | None:
    import torch

    if args.dry_run or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(args.device))


def _profile_line(profile: str, result: Mapping[str, Any]) -> str:
    roles, full, encoder = result["roles"], result["full"], result["clip_encoder"]
    return (f"{profile}: clip {roles['clip']['ratio']:.1f}x, ground {roles['ground']['ratio']:.1f}x, "
            f"generate {roles['generate']['ratio']:.1f}x, verify {roles['verify']['ratio']:.1f}x, all roles {full['all_roles']['ratio']:.1f}x, "
            f"cascade {full['cascade']['ratio']:.1f}x ({full['cascade']['engine']['images_per_s']:.1f} images/s); "
            f"CLIP encoder {encoder['images_per_s']:.0f} images/s = {encoder['fraction_of_peak']:.1%} of peak")


if __name__ == "__main__":
    main()
