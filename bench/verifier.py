"""The verifier's cost per looked-closer post, beside the other roles', and against BLIP's own per-pair call.

Run: .venv/bin/python -m bench.verifier [--posts 2] [--profile small] [--quick] [--results-dir bench/results]
Writes <results-dir>/verifier.json.

One Engine with every role of the profile (CLIP, OWLv2, SmolVLM and the BLIP ITM verifier),
full-size architectures with random weights built in memory (bench/architectures.py), fp32 on
the CPU, analyses --posts 640x480 JPEG posts with look_closer 0: every post is looked at closer
and every category of the default policy is flagged, so the verifier scores the image against
all the policy's prompts (the most it can do for one post). Each stage's wall time comes from
the engine's own `timings_ms` for the batch and is divided by the posts: the verifier's
`verify` stage against `embed` + `score` (CLIP), `ground`, `generate`.

Beside it, in the same run: BlipForImageTextRetrieval called once per (image, prompt) pair,
fp32, as its model card shows (bench.engine.Reference.verify), on the same posts; the ratio is
its time over the engine's `verify`. One warm-up analysis (another policy version) and one
warm-up reference call are excluded. --quick runs the tiny checkpoints instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from bench import common
from bench.architectures import VERIFIER_ARCHITECTURES, architecture_build
from bench.common import ratio, results_write
from bench.engine import MAX_NEW_TOKENS, Reference, bench_policy, bench_posts, warm_up_policy
from vlm_engine.clip import ClipRole
from vlm_engine.config import TINY_SUBDIRS, EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.generation import GeneratorRole
from vlm_engine.grounding import GrounderRole
from vlm_engine.types import Policy, PostInput
from vlm_engine.verification import VERIFIER_FAMILIES, VerifierRole

ROLE_STAGES = {"clip": ("embed", "score"), "ground": ("ground",), "generate": ("generate",), "verify": ("verify",)}


def engine_build(profile: str, *, quick: bool, tiny_dir: Path) -> Engine:
    """Every role of `profile` at full size (random weights, in memory), or the tiny checkpoints."""
    config = EngineConfig(profile=profile, clip="in-memory", grounder="in-memory", generator="in-memory",
                          verifier="in-memory", look_closer=0.0, max_new_tokens=MAX_NEW_TOKENS, batch_size=8)
    if quick:
        from vlm_engine.tiny import tiny_checkpoints_write

        tiny_checkpoints_write(tiny_dir)
        paths = {role: str(tiny_dir / subdir) for role, subdir in TINY_SUBDIRS.items()}
        return Engine.from_config(dataclasses.replace(config, **paths))
    models = {role: architecture_build(profile, role) for role in ("clip", "grounder", "generator", "verifier")}
    version = "random@bench"
    model, processor = models["verifier"]
    adapter = VERIFIER_FAMILIES[model.config.model_type](model.eval(), processor, device="cpu")
    return Engine(config, ClipRole(*models["clip"], version=f"clip:{version}", device="cpu"),
                  grounder=GrounderRole(*models["grounder"], version=f"owlv2:{version}", device="cpu"),
                  generator=GeneratorRole(*models["generator"], version=f"vlm:{version}", device="cpu"),
                  verifier=VerifierRole(adapter, version=f"itm:{version}"))


def engine_side(engine: Engine, posts: Sequence[PostInput], policy: Policy) -> dict[str, Any]:
    """Per looked-closer post: each role's milliseconds from the engine's stage timings."""
    engine.analyze(posts[:1], warm_up_policy(policy))
    start = time.perf_counter()
    analyses = engine.analyze(posts, policy)
    wall_s = time.perf_counter() - start
    timings = analyses[0].timings_ms
    per_post = {role: sum(timings.get(stage, 0.0) for stage in stages) / len(posts)
                for role, stages in ROLE_STAGES.items()}
    return {"wall_s": wall_s, "timings_ms": dict(timings), "ms_per_post": per_post,
            "verify_share_of_looked_closer_post": per_post["verify"] / sum(per_post.values()),
            "flagged_categories_per_post": len(analyses[0].verification),
            "looked_closer_posts": sum(bool(a.verification) for a in analyses)}


def reference_side(engine: Engine, posts: Sequence[PostInput], policy: Policy) -> dict[str, Any]:
    """BLIP's per-pair call on the same weights (the engine's model object), every prompt of every category."""
    assert engine.verifier is not None
    adapter = engine.verifier.adapter
    reference = Reference(None, None, None, max_new_tokens=MAX_NEW_TOKENS, verifier=(adapter.model, adapter.processor))
    prompts = [prompt for category in policy.categories for prompt in category.prompts]
    images = [Image.open(io.BytesIO(post.image or b"")).convert("RGB") for post in posts]
    reference.verify(images[0], ["warm-up prompt"])
    start = time.perf_counter()
    for image in images:
        reference.verify(image, prompts)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    return {"ms_per_post": elapsed_ms / len(posts), "pairs_per_post": len(prompts)}


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2, help="posts in the batch (both sides)")
    parser.add_argument("--profile", default="small", choices=sorted(VERIFIER_ARCHITECTURES))
    parser.add_argument("--quick", action="store_true", help="tiny checkpoints: a smoke run in seconds")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--tiny-dir", type=Path, default=Path("var/bench-models/tiny"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = arguments(argv)
    engine = engine_build(args.profile, quick=args.quick, tiny_dir=args.tiny_dir)
    posts = bench_posts(args.posts)
    policy = bench_policy(phrases=4, questions=1)
    load_before = os.getloadavg()
    measured = engine_side(engine, posts, policy)
    reference = reference_side(engine, posts, policy)
    payload = {
        "command": " ".join([".venv/bin/python -m bench.verifier", *(sys.argv[1:] if argv is None else argv)]),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "inputs": {"posts": len(posts), "profile": "tiny" if args.quick else args.profile,
                   "verifier": "tiny" if args.quick else VERIFIER_ARCHITECTURES[args.profile][0],
                   "categories": len(policy.categories), "prompts": reference["pairs_per_post"],
                   "device": "cpu", "dtype": "float32"},
        "engine": measured,
        "reference": reference,
        "ratio_reference_over_engine_verify": ratio(reference["ms_per_post"], measured["ms_per_post"]["verify"]),
    }
    path = results_write("verifier", payload, args.results_dir)
    print(summary_line(payload, path))


def summary_line(payload: Mapping[str, Any], path: Path) -> str:
    per_post = payload["engine"]["ms_per_post"]
    roles = ", ".join(f"{role} {ms:.0f}" for role, ms in per_post.items())
    return (f"ms per looked-closer post: {roles} (verify {payload['engine']['verify_share_of_looked_closer_post']:.0%}"
            f" of it); BLIP per pair {payload['reference']['ms_per_post']:.0f} ms/post -> "
            f"{payload['ratio_reference_over_engine_verify']:.2f}x; wrote {path}")


if __name__ == "__main__":
    main()
