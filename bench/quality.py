"""Quality on our own labelled meme set, offline: the hate score's AUROC and the OCR word recall.

Run: .venv/bin/python -m bench.quality [--per-class 20]
Writes bench/results/quality.json. The engine is what an offline `make run` builds: tiny random
CLIP, the RapidOCR reader and the packaged MiniLM text role, with the default policy and its
exemplars (grounder and generator off: with the OCR reader they do not change scores).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import results_write
from bench.memes import Meme, meme_set
from bench.ocr import word_recall
from vlm_engine.engine import Engine
from vlm_engine.learning.metrics import auroc
from vlm_engine.loading import engine_config_resolve
from vlm_engine.types import Analysis, Category, Policy, PostInput

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent.parent / "moderation" / "fixtures" / "default_policy.json"


def default_policy() -> Policy:
    """The shipped default policy, as the engine sees it (read from the fixture, no database)."""
    data = json.loads(DEFAULT_POLICY_PATH.read_text())
    categories = tuple(
        Category(slug=c["slug"], name=c["name"], prompts=tuple(c["prompts"]), description=c["description"],
                 exemplars=tuple(c["exemplars"]), severity=c["severity"], review_threshold=c["review_threshold"],
                 remove_threshold=c["remove_threshold"])
        for c in data["categories"]
    )
    return Policy(version="default", categories=categories, benign_prompts=tuple(data["benign_prompts"]),
                  benign_exemplars=tuple(data["benign_exemplars"]))


def offline_engine(tiny_dir: str, **overrides: str) -> Engine:
    config, _ = engine_config_resolve("small", tiny_dir=tiny_dir, timeout_s=0.5,
                                      overrides={"grounder": "", "generator": "", **overrides})
    return Engine.from_config(config)


def quality(engine: Engine, memes: list[Meme], policy: Policy) -> dict[str, Any]:
    """AUROC of the hate score (hateful vs benign) and OCR word recall, over `memes`."""
    posts = [PostInput(key=m.key, image=m.image, text=m.text) for m in memes]
    results: list[Analysis] = []
    for start in range(0, len(posts), 8):
        results += engine.analyze(posts[start : start + 8], policy)
    hate = np.array([r.scores["hate"] for r in results])
    labels = np.array([float(m.hateful) for m in memes])
    recall = [word_recall([r.ocr_text or ""], m.words) for r, m in zip(results, memes)]
    return {"memes": len(memes), "hate_auroc": auroc(hate, labels), "ocr_word_recall": float(np.mean(recall)),
            "hate_scores": {m.key: round(float(s), 4) for m, s in zip(memes, hate)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=20)
    args = parser.parse_args()
    memes, policy = meme_set(args.per_class), default_policy()
    with tempfile.TemporaryDirectory() as tiny:
        started = time.perf_counter()
        engine = offline_engine(tiny)
        row = quality(engine, memes, policy)
        text_only = quality(offline_engine(tiny, text_role_weight="1.0"), memes, policy)
        row["seconds"] = round(time.perf_counter() - started, 1)
    payload = {"command": ".venv/bin/python -m bench.quality", "model_version": engine.model_version,
               "roles_real": engine.roles_real(), "zero_shot": row,
               "text_role_alone": {k: text_only[k] for k in ("hate_auroc", "ocr_word_recall")},
               "not_measured": "kNN, ASIF and the trained head after N reviewer decisions"}
    print(results_write("quality", payload))
    print(f"zero-shot hate AUROC {row['hate_auroc']:.3f} (text role alone {text_only['hate_auroc']:.3f}), "
          f"OCR word recall {row['ocr_word_recall']:.3f} over {row['memes']} memes")


if __name__ == "__main__":
    main()
