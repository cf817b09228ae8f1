"""Fusion-head training time on 10,000 and 100,000 labelled 512-d embeddings (CPU).

Run: .venv/bin/python -m bench.train [--sizes 10000 100000] [--threads 1]
Writes bench/results/train.json. The labels are a function of image ⊙ text over four
categories (neither side alone predicts them), so the held-out AUROC shows the head learned.
Target: under 60 s for 100,000. Records torch's thread count and the load average, since
both change CPU timings a lot on a shared 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.common import results_write
from vlm_engine.learning import LabelledEmbeddings, TrainingConfig, head_train, metrics_evaluate

DIM, CATEGORIES, PRODUCT_DIMS = 512, ("hate", "harassment", "extremism", "violence"), 4
TARGET_S_AT_100K = 60.0


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def dataset(rng: np.random.Generator, n: int, prefix: str) -> LabelledEmbeddings:
    image, text = unit_rows(rng, n), unit_rows(rng, n)
    product = image * text
    labels = np.stack([(product[:, c * PRODUCT_DIMS:(c + 1) * PRODUCT_DIMS].sum(axis=1) > 0)
                       for c in range(len(CATEGORIES))], axis=1).astype(np.float32)
    return LabelledEmbeddings(image, text, labels, tuple(f"{prefix}{i}" for i in range(n)))


def run(size: int, config: TrainingConfig) -> dict[str, object]:
    rng = np.random.default_rng(size)
    train = dataset(rng, int(size * 0.7), "train")
    validation, test = dataset(rng, int(size * 0.15), "val"), dataset(rng, int(size * 0.15), "test")
    epochs: list[int] = []
    start = time.perf_counter()
    head = head_train(train, validation, categories=CATEGORIES, config=config,
                      progress=lambda epoch, total, loss: epochs.append(epoch))
    seconds = time.perf_counter() - start
    metrics = metrics_evaluate(head.predict(test.image, test.text), test.labels, categories=CATEGORIES,
                               thresholds=dict.fromkeys(CATEGORIES, (0.5, 0.9)))
    print(f"{size} labelled: {seconds:.1f} s ({max(epochs)} epochs), held-out macro AUROC "
          f"{metrics['macro']['auroc']:.3f}", flush=True)
    return {"labelled": size, "train_rows": len(train.keys), "seconds": seconds, "epochs_run": max(epochs),
            "seconds_per_epoch": seconds / max(epochs), "held_out_macro_auroc": metrics["macro"]["auroc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainingConfig()
    load_before = os.getloadavg()
    runs = [run(size, config) for size in args.sizes]
    largest = max(runs, key=lambda r: r["labelled"])
    payload = {"command": ".venv/bin/python -m bench.train" + (f" --threads {args.threads}" if args.threads else ""),
               "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
               "config": config.__dict__, "runs": runs, "target_s_at_100k": TARGET_S_AT_100K,
               "within_target": largest["labelled"] >= 100_000 and largest["seconds"] <= TARGET_S_AT_100K}
    print(f"wrote {results_write('train', payload)}")


if __name__ == "__main__":
    main()
