"""Worker decode-ahead: 12 MP JPEG posts drained with the next batch decoded while one runs, vs not.

Run: .venv/bin/python -m bench.decode_ahead [--batches 6] [--batch-size 8]
Needs PostgreSQL (BENCH_ADMIN_DATABASE_URL, as bench/pipeline.py). Writes bench/results/decode-ahead.json.

The worker's own code runs in this process against a real database: ``batch_analyze`` in a
loop (claim, read, decode, analyse, record: one after the other, as before decode-ahead) and
``batches_drain`` (the next batch claimed and decoded in a background thread while the engine
runs the current one), on the same posts, reset between the two. The engine is the `small`
profile's CLIP (ViT-B/32 shape, random weights) with one torch thread, so decoding has the
other core; on a GPU worker the engine's share moves to the accelerator and decoding is all
that is left on the CPU between batches.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

from bench.common import BenchmarkFailed, ratio, results_write, summary
from bench.pipeline import ADMIN_URL, ROOT, VAR, psql

DB_NAME = "moderation_bench_decode"
IMAGE_SIZE = (4000, 3000)  # 12 MP, a phone photo
DISTINCT_IMAGES = 4  # decoding costs the same for each; fewer distinct files keep the setup short


def environment() -> dict[str, str]:
    server = ADMIN_URL.rsplit("/", 1)[0]
    settings = {"PROFILE": "tiny", "MODELS": {"grounder": "", "generator": "", "verifier": ""}}
    return {"DJANGO_SETTINGS_MODULE": "demo.settings.production", "DJANGO_SECRET_KEY": "bench-" * 10,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DATABASE_URL": f"{server}/{DB_NAME}",
            "MODERATION_VAR_DIR": str(VAR / "decode-ahead"), "MODERATION_SETTINGS_JSON": json.dumps(settings),
            "LOG_LEVEL": "WARNING"}


def database_create(env: dict[str, str]) -> None:
    psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **env}, check=True)


def posts_create(count: int) -> None:
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile

    from bench.engine import post_jpeg
    from moderation.models import Post

    client, _ = get_user_model().objects.get_or_create(username="bench")
    images = [post_jpeg(seed, IMAGE_SIZE) for seed in range(DISTINCT_IMAGES)]
    for i in range(count):
        post = Post(client=client, text=f"photo {i}", image_width=IMAGE_SIZE[0], image_height=IMAGE_SIZE[1],
                    image_format="JPEG")
        post.image.save("upload.jpg", ContentFile(images[i % DISTINCT_IMAGES]), save=False)
        post.save()


def posts_requeue() -> None:
    from moderation.models import Analysis, Post, PostEvent

    Post.objects.update(state="queued", current_analysis=None, attempts=0, claim_token=None)
    PostEvent.objects.all().delete()
    Analysis.objects.all().delete()


def side_run(name: str, drain: Callable[[], int], expected: int) -> dict[str, Any]:
    from moderation.models import Analysis

    posts_requeue()
    start = time.perf_counter()
    done = drain()
    elapsed = time.perf_counter() - start
    if done != expected:
        raise BenchmarkFailed(f"{name}: analysed {done} of {expected} posts")
    timings = [a.timings_ms for a in Analysis.objects.distinct("claim_token").order_by("claim_token")]
    result = {"seconds": elapsed, "posts_per_s": expected / elapsed,
              "decode_ms_per_batch": summary([t["decode"] for t in timings]),
              "engine_ms_per_batch": summary([t["embed"] + t["score"] for t in timings])}
    print(f"{name}: {result['posts_per_s']:.2f} posts/s ({elapsed:.1f} s); per batch: decode "
          f"{result['decode_ms_per_batch']['p50']:.0f} ms, engine {result['engine_ms_per_batch']['p50']:.0f} ms",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    env = environment()
    database_create(env)
    os.environ.update(env)
    import django

    django.setup()
    import torch

    from bench.architectures import architecture_write
    from vlm_engine.config import EngineConfig
    from vlm_engine.engine import Engine
    from workers.pipeline import batch_analyze, batches_drain

    torch.set_num_threads(1)
    engine = Engine.from_config(EngineConfig.for_profile(
        "small", clip=str(architecture_write("small", "clip")), grounder="", generator="", verifier="",
        batch_size=args.batch_size))
    count = args.batches * args.batch_size
    posts_create(count)

    def one_after_the_other() -> int:
        total = 0
        while claimed := batch_analyze(engine=lambda: engine, batch_size=args.batch_size, worker="bench"):
            total += claimed
        return total

    def decode_ahead() -> int:
        return batches_drain(engine=lambda: engine, batch_size=args.batch_size, worker="bench")

    side_run("warm-up", decode_ahead, count)
    sides = {"sequential": side_run("sequential", one_after_the_other, count),
             "decode_ahead": side_run("decode ahead", decode_ahead, count)}
    payload = {
        "command": f".venv/bin/python -m bench.decode_ahead --batches {args.batches} --batch-size {args.batch_size}",
        "input": {"image_size": list(IMAGE_SIZE), "posts": count, "batch_size": args.batch_size,
                  "engine": "small profile CLIP (ViT-B/32 shape, random weights), 1 torch thread, CPU"},
        "sides": sides,
        "ratio_throughput_decode_ahead_over_sequential": ratio(sides["decode_ahead"]["posts_per_s"],
                                                               sides["sequential"]["posts_per_s"]),
    }
    path = results_write("decode-ahead", payload)
    print(f"decode ahead / sequential: {payload['ratio_throughput_decode_ahead_over_sequential']:.2f}x; wrote {path}")


if __name__ == "__main__":
    main()
