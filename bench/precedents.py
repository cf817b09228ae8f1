"""ASIF precedents against the kNN vote, on the same splits: hate-score AUROC after N reviewer decisions.

Run: .venv/bin/python -m bench.precedents [--seeds 10] [--no-memes]
Writes bench/results/precedents.json. Three sets, each with labels that embeddings can predict:
- `clusters`: synthetic posts in topic clusters, mostly hateful or mostly benign (10 % label
  noise), image and text each a noisy view of the cluster;
- `templates`: synthetic memes, one image template shared by a hateful and a benign text, so
  only the text side tells them apart (the hateful-memes case);
- `memes`: bench/memes.py's drawn memes, the post caption and the meme's words embedded by the
  packaged MiniLM text role (as if the reader read every word; text only, so it fills both sides).
Every method sees the same anchors with k = KNN_K = 15: kNN, and ASIF at exponents 1, 2, 4, 8.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import results_write
from vlm_engine.learning import AsifClassifier, KnnClassifier, LabelledEmbeddings
from vlm_engine.learning.metrics import auroc

if TYPE_CHECKING:
    from vlm_engine.text import TextRole

K = 15
DIM, TEST_POSTS = 64, 300
TRAIN_SIZES = (30, 100, 300)
EXPONENTS = (1.0, 2.0, 4.0, 8.0)
Classifier = Callable[[LabelledEmbeddings], Any]


def _knn(data: LabelledEmbeddings) -> KnnClassifier:
    return KnnClassifier(data, categories=["hate"], k=K, min_labels=1)


def _asif(exponent: float) -> Classifier:
    return lambda data: AsifClassifier(data, categories=["hate"], k=K, exponent=exponent, min_labels=1)


# The same anchors for every method: kNN, and ASIF at each exponent.
METHODS: dict[str, Classifier] = {"knn": _knn, **{f"asif_p{p:g}": _asif(p) for p in EXPONENTS}}


def _unit(rows: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def _noisy(centres: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return _unit(centres + rng.normal(0, noise / np.sqrt(DIM), centres.shape))


def clusters(n: int, rng: np.random.Generator) -> LabelledEmbeddings:
    """16 topics, half mostly hateful; image views noisier than text views."""
    image_c, text_c = _unit(rng.normal(size=(16, DIM))), _unit(rng.normal(size=(16, DIM)))
    topic = rng.integers(0, 16, n)
    labels = ((topic % 2 == 0) ^ (rng.random(n) < 0.1)).astype(np.float32)
    return LabelledEmbeddings(image=_noisy(image_c[topic], 1.6, rng), text=_noisy(text_c[topic], 1.0, rng),
                              labels=labels[:, None], keys=tuple(f"c{i}" for i in range(n)))


def templates(n: int, rng: np.random.Generator) -> LabelledEmbeddings:
    """8 image templates, each posted with a hateful and a benign text topic."""
    image_c = _unit(rng.normal(size=(8, DIM)))
    text_c = _unit(rng.normal(size=(8, 2, DIM)))
    template, hateful = rng.integers(0, 8, n), rng.integers(0, 2, n)
    return LabelledEmbeddings(image=_noisy(image_c[template], 0.8, rng),
                              text=_noisy(text_c[template, hateful], 1.2, rng),
                              labels=hateful.astype(np.float32)[:, None], keys=tuple(f"t{i}" for i in range(n)))


def _scores(make: Classifier, train: LabelledEmbeddings, test: LabelledEmbeddings) -> np.ndarray:
    scores: np.ndarray = make(train).predict(test.image, test.text)[:, 0]
    return scores


def compare(draw: Callable[[int, np.random.Generator], LabelledEmbeddings], seeds: int) -> dict[str, Any]:
    """Mean and spread of AUROC per method and train size, each seed's train and test drawn once for all."""
    figures: dict[str, dict[str, list[float]]] = {m: {str(n): [] for n in TRAIN_SIZES} for m in METHODS}
    for seed in range(seeds):
        data = draw(max(TRAIN_SIZES) + TEST_POSTS, np.random.default_rng(seed))
        test = data.take(range(max(TRAIN_SIZES), len(data.keys)))
        for n in TRAIN_SIZES:
            train = data.take(range(n))
            for name, make in METHODS.items():
                value = auroc(_scores(make, train, test), test.labels[:, 0])
                if value is not None:
                    figures[name][str(n)].append(value)
    return {name: {n: _spread(values) for n, values in by_n.items()} for name, by_n in figures.items()}


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4), "runs": len(values)}


def memes(seeds: int, role: TextRole | None = None) -> dict[str, Any]:
    """Leave-one-out over every meme, and random 30-decision splits (the other memes held out),
    embedded by `role` (default: the packaged MiniLM)."""
    from bench.memes import BENIGN, HATEFUL, meme_set
    from vlm_engine.cascade import classifier_text
    from vlm_engine.text import PACKAGED_MINILM, TextRole

    items = meme_set()
    lines = [*HATEFUL, *BENIGN]  # meme_set() draws them in this order
    texts = [classifier_text(m.text, "\n".join(line)) for m, line in zip(items, lines)]
    role = role or TextRole.load(PACKAGED_MINILM, device="cpu")
    embedded = _unit(role.embed(texts).astype(np.float32))
    data = LabelledEmbeddings(image=embedded, text=embedded, labels=np.array([[float(m.hateful)] for m in items],
                              dtype=np.float32), keys=tuple(m.key for m in items))
    result: dict[str, Any] = {"memes": len(items)}
    for name, make in METHODS.items():
        loo = [_scores(make, data.take([j for j in range(len(items)) if j != i]), data.take([i]))[0]
               for i in range(len(items))]
        splits = []
        for seed in range(seeds * 5):
            order = np.random.default_rng(seed).permutation(len(items))
            value = auroc(_scores(make, data.take(order[:30]), data.take(order[30:])), data.labels[order[30:], 0])
            if value is not None:
                splits.append(value)
        result[name] = {"leave_one_out": round(float(auroc(np.array(loo), data.labels[:, 0]) or 0.0), 4),
                        "after_30": _spread(splits)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--no-memes", action="store_true", help="skip the MiniLM meme set (loads the text role)")
    args = parser.parse_args()
    payload: dict[str, Any] = {"command": ".venv/bin/python -m bench.precedents", "k": K,
                               "test_posts": TEST_POSTS, "seeds": args.seeds,
                               "clusters": compare(clusters, args.seeds), "templates": compare(templates, args.seeds)}
    if not args.no_memes:
        payload["memes"] = memes(args.seeds)
    print(results_write("precedents", payload))
    for name in ("clusters", "templates"):
        for n in TRAIN_SIZES:
            row = ", ".join(f"{m} {payload[name][m][str(n)]['mean']:.3f}" for m in METHODS)
            print(f"{name:9} after {n:3} decisions: AUROC {row}")
    if "memes" in payload:
        m = payload["memes"]
        print("memes leave-one-out: " + ", ".join(f"{k} {m[k]['leave_one_out']:.3f}" for k in METHODS))
        print("memes after 30:      " + ", ".join(f"{k} {m[k]['after_30']['mean']:.3f}" for k in METHODS))


if __name__ == "__main__":
    main()
