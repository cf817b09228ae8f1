"""Engine throughput (all roles, and the cascade) against the transformers pipelines called per post.

Run: .venv/bin/python -m bench.engine [--posts 2] [--phrases 5] [--questions 1] [--quick]
     [--results-dir bench/results]
Writes <results-dir>/engine.json. Both sides run in this invocation, on the same full-size
random-weight small-profile checkpoints (bench/architectures.py; written once under
var/bench-models/) and the same posts: 640x480 JPEGs with a line of text each, and the
default policy (moderation/fixtures/default_policy.json) cut to --phrases grounding phrases
and --questions questions, taken one category at a time so every category keeps some.

Engine: `Engine.analyze(posts, policy)` on the whole batch, once with look_closer=0.0 (all
roles for every post) and once as a cascade, look_closer set to the median of the first
pass's top scores so that about half the posts look closer (random weights score
arbitrarily, so a fixed threshold would pick all or none).
Reference, per post, fp32, batch 1: "zero-shot-image-classification" once per category
(labels: the category's prompts plus the benign prompts, as the engine scores),
"zero-shot-object-detection" with every phrase (one full model pass per phrase), and
"image-text-to-text" once per prompt (caption, OCR, each question, the rationale). The
reference cascade is derived from its per-post stage timings: CLIP for every post, the rest
for the posts the engine's cascade chose.
Warm-up calls (one post, another policy version and phrases, so the measured calls still
embed their prompts and phrases) are excluded. --quick runs the tiny checkpoints instead.

Then one row per other embedder family (--families; bench/families.py): the engine scoring the
batch with that embedder alone against the transformers reference per post and category, on the
published base checkpoint's shape with random weights (the tiny checkpoint with --quick).

And one row per generator family and MaGiC (--generators; bench/generators.py): the engine's
batched captions and answers against transformers' own greedy generate per post and prompt, on
the same shapes (or stated reductions), with whether both sides' greedy tokens are identical.
With --quick these rows use 64x48 posts, which the engine decodes whole as the reference does
(a 640x480 JPEG it would decode in draft mode at twice the tiny embedder's side, other pixels).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench import common
from bench.architectures import MODELS_DIR, profile_write
from bench.common import BenchmarkFailed, ratio, results_write, summary
from bench.families import FAMILY_SHAPES, families_rows
from bench.generators import GENERATOR_SHAPES, QUICK_IMAGE_SIZE, generators_rows
from vlm_engine.cascade import policy_phrases, policy_questions
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.generation import PROMPTS, rationale_prompt
from vlm_engine.types import Analysis, Category, Policy, PostInput

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "moderation" / "fixtures" / "default_policy.json"
IMAGE_SIZE = (640, 480)
MAX_NEW_TOKENS = 8
# A side failing in the model stack: torch raises RuntimeError (out of memory included),
# transformers ValueError or OSError.
SIDE_ERRORS = (RuntimeError, ValueError, OSError)


def post_jpeg(seed: int, size: tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A photo-like JPEG (gradients plus noise), quality 90."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 255, y / height * 255, np.full(x.shape, rng.uniform(0, 255))], axis=-1)
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bench_posts(count: int, *, first_seed: int = 1, size: tuple[int, int] = IMAGE_SIZE) -> list[PostInput]:
    return [PostInput(key=f"post-{seed}", image=post_jpeg(seed, size), text=f"look at this photo number {seed}")
            for seed in range(first_seed, first_seed + count)]


def bench_policy(*, phrases: int | None, questions: int | None, version: str = "bench-1") -> Policy:
    """The default policy, its phrases and questions cut to the first `phrases` / `questions`, round-robin.

    None keeps them all.
    """
    data = json.loads(DEFAULT_POLICY.read_text())
    kept_phrases = _round_robin([tuple(c["phrases"]) for c in data["categories"]], phrases)
    kept_questions = _round_robin([tuple(c["questions"]) for c in data["categories"]], questions)
    categories = tuple(
        Category(slug=c["slug"], name=c["name"], prompts=tuple(c["prompts"]), phrases=kept_phrases[i],
                 questions=kept_questions[i], review_threshold=c["review_threshold"],
                 remove_threshold=c["remove_threshold"])
        for i, c in enumerate(data["categories"])
    )
    return Policy(version=version, categories=categories, benign_prompts=tuple(data["benign_prompts"]))


def _round_robin(groups: Sequence[tuple[str, ...]], limit: int | None) -> list[tuple[str, ...]]:
    """Each group cut so that, taking one item per group in turn, `limit` items are kept in all."""
    kept: list[list[str]] = [[] for _ in groups]
    remaining = sum(len(group) for group in groups) if limit is None else limit
    for depth in range(max((len(group) for group in groups), default=0)):
        for index, group in enumerate(groups):
            if remaining > 0 and depth < len(group):
                kept[index].append(group[depth])
                remaining -= 1
    return [tuple(items) for items in kept]


def warm_up_policy(policy: Policy) -> Policy:
    """Another version with other phrases: the measured call still embeds its own prompts and phrases."""
    categories = tuple(dataclasses.replace(c, phrases=tuple(f"a {phrase}" for phrase in c.phrases))
                       for c in policy.categories)
    return dataclasses.replace(policy, version=f"{policy.version}-warm-up", categories=categories)


def post_prompts(post: PostInput, policy: Policy) -> list[str]:
    """The generator prompts the engine's cascade sends for a post, in its order."""
    names = [category.name for category in policy.categories]
    return [PROMPTS["caption"], PROMPTS["ocr"], *policy_questions(policy), rationale_prompt(names, post.text)]


@contextmanager
def stopwatch(into: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time, in milliseconds, to `into[stage]`."""
    start = time.perf_counter()
    yield
    into[stage] = into.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


class Reference:
    """The transformers pipelines, fp32 and batch 1, called per post as their documentation shows."""

    def __init__(self, classifier: Any, detector: Any, generator: Any, *, max_new_tokens: int,
                 verifier: tuple[Any, Any] | None = None) -> None:
        self.classifier = classifier
        self.detector = detector
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        self.verifier = verifier  # (BlipForImageTextRetrieval, processor): no pipeline task matches pairs

    @classmethod
    def load(cls, models: Mapping[str, Any], *, device: str, max_new_tokens: int = MAX_NEW_TOKENS) -> Reference:
        """Pipelines over role -> checkpoint path, or role -> (model, processor) already in memory; a
        "verifier" role, when given, is a BLIP ITM model called as its model card shows."""
        tasks = {"clip": "zero-shot-image-classification", "grounder": "zero-shot-object-detection",
                 "generator": "image-text-to-text"}
        pipes = {role: _pipeline(task, models[role], device) for role, task in tasks.items()}
        verifier = _verifier_model(models["verifier"], device) if "verifier" in models else None
        return cls(pipes["clip"], pipes["grounder"], pipes["generator"], max_new_tokens=max_new_tokens,
                   verifier=verifier)

    def post(self, post: PostInput, policy: Policy) -> dict[str, float]:
        """Run every role on one post; returns stage -> milliseconds (decode, clip, ground, generate)."""
        stages: dict[str, float] = {}
        with stopwatch(stages, "decode"):
            assert post.image is not None
            image = Image.open(io.BytesIO(post.image)).convert("RGB")
        with stopwatch(stages, "clip"):
            self.classify(image, policy)
        with stopwatch(stages, "ground"):
            self.detect(image, policy_phrases(policy))
        with stopwatch(stages, "generate"):
            for prompt in post_prompts(post, policy):
                self.answer(image, prompt)
        if self.verifier is not None:
            with stopwatch(stages, "verify"):
                self.verify(image, [prompt for category in policy.categories for prompt in category.prompts])
        return stages

    def warm_up(self, post: PostInput, policy: Policy) -> None:
        """One call of each pipeline, on the least work: a category, a phrase, a prompt."""
        assert post.image is not None
        image = Image.open(io.BytesIO(post.image)).convert("RGB")
        self.classify(image, dataclasses.replace(policy, categories=policy.categories[:1]))
        self.detect(image, ["warm-up phrase"])
        self.answer(image, PROMPTS["caption"])
        if self.verifier is not None:
            self.verify(image, ["warm-up prompt"])

    def classify(self, image: Image.Image, policy: Policy) -> None:
        """One zero-shot classification per category: its prompts against the benign ones."""
        for category in policy.categories:
            labels = list(category.prompts + policy.benign_prompts)
            self.classifier(image, candidate_labels=labels, hypothesis_template="{}")

    def detect(self, image: Image.Image, phrases: Sequence[str]) -> None:
        """Boxes for every phrase; the pipeline runs the whole model once per phrase."""
        if phrases:
            self.detector(image, candidate_labels=list(phrases), threshold=0.1)

    def verify(self, image: Image.Image, prompts: Sequence[str]) -> list[float]:
        """P(match) of the image with each prompt, one (image, text) pair per call as the BLIP model card shows."""
        import torch

        assert self.verifier is not None
        model, processor = self.verifier
        matches = []
        for prompt in prompts:
            inputs = processor(images=image, text=prompt, return_tensors="pt").to(model.device)
            with torch.inference_mode():
                matches.append(float(model(**inputs, use_itm_head=True).itm_score.softmax(-1)[0, 1]))
        return matches

    def answer(self, image: Image.Image, prompt: str) -> str:
        chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
        generate_kwargs = {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        result = self.generator(text=chat, generate_kwargs=generate_kwargs, return_full_text=False)
        return str(result[0]["generated_text"])


def _pipeline(task: str, model: Any, device: str) -> Any:
    import torch
    from transformers import pipeline

    if isinstance(model, (str, Path)):
        return pipeline(task, model=str(model), device=device, dtype=torch.float32)
    network, processor = model  # already fp32, on `device`
    return pipeline(task, model=network, tokenizer=processor.tokenizer,
                    image_processor=processor.image_processor, processor=processor, device=device)


def _verifier_model(model: Any, device: str) -> tuple[Any, Any]:
    if not isinstance(model, (str, Path)):
        return tuple(model)  # type: ignore[return-value]
    from transformers import BlipForImageTextRetrieval

    from vlm_engine.checkpoints import checkpoint_load

    loaded: tuple[Any, Any] = checkpoint_load(BlipForImageTextRetrieval, str(model), device=device, dtype="float32")
    return loaded


def engine_pass(engine: Engine, posts: Sequence[PostInput], policy: Policy, *, repeats: int) -> dict[str, Any]:
    """Time `repeats` analyze calls over the whole batch; the last call's analyses ride along."""
    samples: list[float] = []
    timings: list[dict[str, float]] = []
    analyses: list[Analysis] = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyses = engine.analyze(posts, policy)
        samples.append(time.perf_counter() - start)
        timings.append(dict(analyses[0].timings_ms))
    return {"posts_per_s": len(posts) / statistics.median(samples), "samples_s": samples,
            "summary_s": summary(samples), "timings_ms": timings, "analyses": analyses}


def engine_warm_up(engine: Engine, post: PostInput, policy: Policy) -> None:
    """Each role once on the least work (a post, a phrase, a prompt), under another policy version."""
    Engine(dataclasses.replace(engine.config, look_closer=2.0), engine.clip).analyze([post], warm_up_policy(policy))
    engine.ground([(post, ["warm-up phrase"])])
    engine.caption([(post, None)])


def engine_side(checkpoints: Mapping[str, Path], posts: Sequence[PostInput], policy: Policy,
                *, repeats: int) -> dict[str, Any]:
    """All roles, then the CLIP-only first pass that sets the cascade threshold, then the cascade."""
    config = EngineConfig(profile="small", clip=str(checkpoints["clip"]), grounder=str(checkpoints["grounder"]),
                          generator=str(checkpoints["generator"]), look_closer=0.0,
                          max_new_tokens=MAX_NEW_TOKENS, batch_size=8)
    engine = Engine.from_config(config)
    engine_warm_up(engine, posts[0], policy)
    all_roles = engine_pass(engine, posts, policy, repeats=repeats)
    # look_closer above 1: no score reaches it, so this is the cascade's first (CLIP-only) pass.
    clip_only = Engine(dataclasses.replace(config, look_closer=2.0), engine.clip)
    first = engine_pass(clip_only, posts, policy, repeats=repeats)
    tops = [max(analysis.scores.values()) for analysis in first.pop("analyses")]
    threshold = statistics.median(tops)
    cascade_engine = Engine(dataclasses.replace(config, look_closer=threshold), engine.clip,
                            grounder=engine.grounder, generator=engine.generator)
    cascade = engine_pass(cascade_engine, posts, policy, repeats=repeats)
    chosen = [row for row, top in enumerate(tops) if top >= threshold]
    for mode in (all_roles, cascade):
        mode.pop("analyses")
    return {"all_roles": all_roles, "clip_only": first,
            "cascade": {**cascade, "look_closer": threshold, "top_scores": tops, "looked_closer_rows": chosen,
                        "looked_closer_fraction": len(chosen) / len(posts)}}


def reference_side(checkpoints: Mapping[str, Any], posts: Sequence[PostInput], policy: Policy,
                   *, device: str = "cpu") -> dict[str, Any]:
    """Every role per post through the pipelines; one warm-up call per pipeline first."""
    reference = Reference.load(checkpoints, device=device)
    reference.warm_up(posts[0], policy)
    per_post = [reference.post(post, policy) for post in posts]
    total_s = sum(sum(stages.values()) for stages in per_post) / 1000.0
    stages = {stage: sum(post_stages[stage] for post_stages in per_post) for stage in per_post[0]}
    return {"posts_per_s": len(posts) / total_s, "total_s": total_s, "stage_ms": stages, "per_post_ms": per_post}


def reference_cascade_posts_per_s(per_post: Sequence[Mapping[str, float]], chosen: Sequence[int]) -> float:
    """Reference cascade throughput from per-post stage times: decode+CLIP for all, the rest for `chosen`."""
    total_ms = sum(stages["decode"] + stages["clip"] for stages in per_post)
    total_ms += sum(per_post[row]["ground"] + per_post[row]["generate"] + per_post[row].get("verify", 0.0)
                    for row in chosen)
    return len(per_post) / (total_ms / 1000.0)


def comparison(engine: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Ratios engine/reference: throughput for all roles and the cascade; reference/engine time per role."""
    engine_ms = engine["all_roles"]["timings_ms"][-1]
    ref_ms = reference["stage_ms"]
    chosen = engine["cascade"]["looked_closer_rows"]
    ref_cascade = reference_cascade_posts_per_s(reference["per_post_ms"], chosen)
    return {
        "all_roles": ratio(engine["all_roles"]["posts_per_s"], reference["posts_per_s"]),
        "cascade": ratio(engine["cascade"]["posts_per_s"], ref_cascade),
        "reference_cascade_posts_per_s": ref_cascade,
        "per_role_time_reference_over_engine": {
            "clip": ratio(ref_ms["clip"], engine_ms["embed"] + engine_ms["score"]),
            "ground": ratio(ref_ms["ground"], engine_ms["ground"]),
            "generate": ratio(ref_ms["generate"], engine_ms["generate"]),
        },
    }


def side_run(name: str, run: Any) -> dict[str, Any]:
    """Run one side; a failure is recorded, never raised here, so the other side still reports."""
    try:
        result: dict[str, Any] = run()
        return result
    except SIDE_ERRORS as err:
        print(f"{name} side failed: {type(err).__name__}: {err}", file=sys.stderr)
        return {"failed": f"{type(err).__name__}: {err}"}


def checkpoints_for(quick: bool, models_dir: Path) -> dict[str, Path]:
    if not quick:
        return profile_write("small", directory=models_dir)
    from vlm_engine.config import TINY_SUBDIRS
    from vlm_engine.tiny import tiny_checkpoints_write

    tiny = tiny_checkpoints_write(models_dir / "tiny")
    # The three roles this benchmark compares with their pipelines; bench.verifier measures the verifier.
    return {role: tiny / TINY_SUBDIRS[role] for role in ("clip", "grounder", "generator")}


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2, help="posts in the batch (both sides)")
    parser.add_argument("--phrases", type=int, default=4, help="grounding phrases kept from the default policy")
    parser.add_argument("--questions", type=int, default=1, help="questions kept from the default policy")
    parser.add_argument("--repeats", type=int, default=1, help="timed engine calls per mode")
    parser.add_argument("--quick", action="store_true", help="tiny checkpoints: a smoke run in seconds")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--families", default=",".join(FAMILY_SHAPES),
                        help="embedder families with a row of their own, comma-separated ('' for none)")
    parser.add_argument("--families-only", action="store_true",
                        help="only the family rows, written to <results-dir>/engine-families.json")
    parser.add_argument("--generators", default=",".join(GENERATOR_SHAPES),
                        help="generator families (and magic) with a row of their own, comma-separated ('' for none)")
    parser.add_argument("--generators-only", action="store_true",
                        help="only the generator rows, written to <results-dir>/engine-generators.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = arguments(argv)
    command = " ".join([".venv/bin/python -m bench.engine", *(sys.argv[1:] if argv is None else argv)])
    posts = bench_posts(args.posts)
    policy = bench_policy(phrases=args.phrases, questions=args.questions)
    load_before = os.getloadavg()
    wanted = [family for family in args.families.split(",") if family]
    generators = [name for name in args.generators.split(",") if name]
    if args.families_only or args.generators_only:
        if args.families_only:
            families_main(args, command, wanted, posts, policy)
        if args.generators_only:
            generators_main(args, command, generators, policy)
        return
    checkpoints = checkpoints_for(args.quick, args.models_dir)
    engine = side_run("engine", lambda: engine_side(checkpoints, posts, policy, repeats=args.repeats))
    reference = side_run("reference", lambda: reference_side(checkpoints, posts, policy))
    rows = families_rows(wanted, args.models_dir / "tiny-embedders", posts, policy,
                         warm_up_policy=warm_up_policy(policy), full_size=not args.quick, repeats=args.repeats)
    generator_rows = generator_rows_run(args, generators, policy)
    payload = {
        "command": command,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "inputs": {"posts": len(posts), "image_size": list(IMAGE_SIZE), "checkpoints": "tiny" if args.quick else
                   {role: path.name for role, path in checkpoints.items()},
                   "categories": len(policy.categories), "phrases": policy_phrases(policy),
                   "questions": policy_questions(policy), "prompts_per_post": len(post_prompts(posts[0], policy)),
                   "max_new_tokens": MAX_NEW_TOKENS},
        "engine": engine,
        "reference": reference,
        "families": rows,
        "generators": generator_rows,
    }
    failed = [side for side, result in (("engine", engine), ("reference", reference)) if "failed" in result]
    failed += [f"{family} family" for family, row in rows.items() if "failed" in row]
    failed += [f"{name} generator" for name, row in generator_rows.items() if "failed" in row]
    if not failed:
        payload["ratios"] = {**comparison(engine, reference),
                             "families": {family: row["ratio"] for family, row in rows.items()},
                             "generators": {name: row["ratio"] for name, row in generator_rows.items()}}
    path = results_write("engine", payload, args.results_dir)
    if failed:
        raise BenchmarkFailed(f"{' and '.join(failed)} side failed; no ratio reported (see {path})")
    print(summary_line(payload, path))


def families_main(args: argparse.Namespace, command: str, wanted: Sequence[str], posts: Sequence[PostInput],
                  policy: Policy) -> None:
    """--families-only: the embedder family rows alone, in engine-families.json."""
    load_before = os.getloadavg()
    rows = families_rows(wanted, args.models_dir / "tiny-embedders", posts, policy,
                         warm_up_policy=warm_up_policy(policy), full_size=not args.quick, repeats=args.repeats)
    payload = {"command": command, "load_average": {"before": load_before, "after": os.getloadavg()},
               "inputs": {"posts": len(posts), "image_size": list(IMAGE_SIZE), "categories": len(policy.categories),
                          "full_size": not args.quick},
               "families": rows, "ratios": {family: row["ratio"] for family, row in rows.items() if "ratio" in row}}
    path = results_write("engine-families", payload, args.results_dir)
    failed = [family for family, row in rows.items() if "failed" in row]
    if failed:
        raise BenchmarkFailed(f"{', '.join(failed)} failed; no ratio for them (see {path})")
    print(f"embedder families (engine/reference posts per s): "
          f"{', '.join(f'{family} {value:.2f}x' for family, value in payload['ratios'].items())}; wrote {path}")


def generator_rows_run(args: argparse.Namespace, wanted: Sequence[str], policy: Policy) -> dict[str, Any]:
    """The generator rows over their own posts (smaller with --quick, see the module docstring)."""
    posts = bench_posts(args.posts, size=QUICK_IMAGE_SIZE if args.quick else IMAGE_SIZE)
    questions = policy_questions(policy)
    return generators_rows(wanted, args.models_dir / "tiny-generators", posts,
                           questions[0] if questions else "What is in the picture?", full_size=not args.quick,
                           max_new_tokens=MAX_NEW_TOKENS, repeats=args.repeats)


def generators_main(args: argparse.Namespace, command: str, wanted: Sequence[str], policy: Policy) -> None:
    """--generators-only: the generator and MaGiC rows alone, in engine-generators.json."""
    load_before = os.getloadavg()
    rows = generator_rows_run(args, wanted, policy)
    payload = {"command": command, "load_average": {"before": load_before, "after": os.getloadavg()},
               "inputs": {"posts": args.posts, "image_size": list(QUICK_IMAGE_SIZE if args.quick else IMAGE_SIZE),
                          "max_new_tokens": MAX_NEW_TOKENS, "greedy": True, "full_size": not args.quick},
               "generators": rows, "ratios": {name: row["ratio"] for name, row in rows.items() if "ratio" in row}}
    path = results_write("engine-generators", payload, args.results_dir)
    failed = [name for name, row in rows.items() if "failed" in row]
    if failed:
        raise BenchmarkFailed(f"{', '.join(failed)} failed; no ratio for them (see {path})")
    print(f"generators (engine/reference posts per s): {generators_summary(rows)}; wrote {path}")


def generators_summary(rows: Mapping[str, Any]) -> str:
    """name ratio, and whether the greedy tokens agree (MaGiC: whether its weights at 0 give the reference's)."""
    def agreement(row: Mapping[str, Any]) -> str:
        same = row.get("same_greedy_tokens", row.get("weights_zero_equals_reference"))
        return "same tokens" if same else "TOKENS DIFFER"

    return ", ".join(f"{name} {row['ratio']:.2f}x ({agreement(row)})" for name, row in rows.items()) or "none"


def summary_line(payload: Mapping[str, Any], path: Path) -> str:
    engine, reference, ratios = payload["engine"], payload["reference"], payload["ratios"]
    return (f"engine {engine['all_roles']['posts_per_s']:.3f} posts/s all roles, "
            f"{engine['cascade']['posts_per_s']:.3f} cascade "
            f"({engine['cascade']['looked_closer_fraction']:.0%} looked closer); reference "
            f"{reference['posts_per_s']:.3f} posts/s -> {ratios['all_roles']:.2f}x all roles, "
            f"{ratios['cascade']:.2f}x cascade; embedder families "
            f"{', '.join(f'{family} {value:.2f}x' for family, value in ratios['families'].items()) or 'none'}; "
            f"generators {generators_summary(payload['generators'])}; wrote {path}")


if __name__ == "__main__":
    main()
