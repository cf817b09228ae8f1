"""Folding the review queue into near-duplicate clusters: linear scans against the multi-index, same run.

For each queue size, builds a queue of PDQ hashes spread over ``--clients`` clients in which
``--viral`` share of the posts are copies of a few viral memes (each copy 0 to 24 bits off its
meme, as re-encoded and resized copies are) and the rest are unrelated images, in random
priority order. Then times ``moderation.selectors.clusters.queue_fold`` (one linear numpy scan of
the leader's client's hashes per leader) for the queue page (the first 50 rows) and for the whole
queue, against the same leader clustering with each client's hashes in a multi-index
(``vlm_engine.pdq_index.PdqIndex``, built on first use); both must return exactly the same
clusters. The database read of the queue's four columns is not included (``bench/admin.py``
renders the page).

    .venv/bin/python -m bench.clusters
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from bench.common import RESULTS_DIR, BenchmarkFailed, ratio, results_write, summary
from vlm_engine.pdq_index import PdqIndex, hashes_from_hex

Row = tuple[Any, Any, str, int | None]


def queue_rows(size: int, *, clients: int, viral: float, memes: int, rng: np.random.Generator) -> list[Row]:
    """``size`` queue rows (id, client, hash, quality) in random priority order."""
    bases = rng.integers(0, 256, size=(memes, 32), dtype=np.uint8)
    rows: list[Row] = []
    for i in range(size):
        if rng.random() < viral:
            bits = np.unpackbits(bases[rng.integers(memes)])
            bits[rng.choice(256, size=int(rng.integers(0, 25)), replace=False)] ^= 1
            pdq = np.packbits(bits).tobytes().hex()
        else:
            pdq = rng.integers(0, 256, size=32, dtype=np.uint8).tobytes().hex()
        rows.append((i, int(rng.integers(clients)), pdq, 100))
    return rows


def fold_multi_index(*, rows: Sequence[Row], threshold: int, min_quality: int, limit: int) -> list[list[Any]]:
    """``queue_fold``'s leader clustering with each client's hashes in a ``PdqIndex`` (the alternative)."""
    by_client: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        by_client.setdefault(row[1], []).append(i)
    hashes: NDArray[np.uint8] = hashes_from_hex([r[2] for r in rows])
    indexes: dict[Any, PdqIndex] = {}
    taken = np.zeros(len(rows), dtype=bool)
    clusters: list[list[Any]] = []
    for i, (_, client_id, _, _) in enumerate(rows):
        if len(clusters) == limit:
            break
        if taken[i]:
            continue
        taken[i] = True
        if client_id not in indexes:
            positions = np.asarray(by_client[client_id], dtype=np.int64)
            indexes[client_id] = PdqIndex(hashes[positions], positions)
        found = sorted(m.id for m in indexes[client_id].search(hashes[i], threshold=threshold) if not taken[m.id])
        taken[found] = True
        clusters.append([rows[m][0] for m in [i, *found]])
    return clusters


def timed(fold: Callable[..., list[list[Any]]], rows: Sequence[Row], *, limit: int,
          repeats: int) -> tuple[list[list[Any]], list[float]]:
    samples, result = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fold(rows=rows, threshold=31, min_quality=50, limit=limit)
        samples.append((time.perf_counter() - start) * 1000)
    return result, samples


def main() -> None:
    import django

    django.setup()  # queue_fold lives in the Django app
    from moderation.selectors.clusters import queue_fold

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--viral", type=float, default=0.5)
    parser.add_argument("--memes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results: dict[str, Any] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        rows = queue_rows(size, clients=args.clients, viral=args.viral, memes=args.memes, rng=rng)
        figures: dict[str, Any] = {}
        for name, limit in (("page", 50), ("whole_queue", size)):
            linear, linear_ms = timed(queue_fold, rows, limit=limit, repeats=args.repeats)
            indexed, indexed_ms = timed(fold_multi_index, rows, limit=limit, repeats=args.repeats)
            if indexed != linear:
                raise BenchmarkFailed(f"the folds differ at {size} rows ({name})")
            figures[name] = {"clusters": len(linear), "posts_in_clusters_of_2_or_more": sum(
                                 len(c) for c in linear if len(c) > 1), "largest": max(len(c) for c in linear),
                             "linear_scan_ms": summary(linear_ms), "multi_index_ms": summary(indexed_ms),
                             "multi_index_over_linear_p50": round(ratio(summary(indexed_ms)["p50"],
                                                                        summary(linear_ms)["p50"]), 2)}
            print(f"{size} rows, {name}: {len(linear)} clusters; linear p50 "
                  f"{figures[name]['linear_scan_ms']['p50']:.1f} ms, multi-index p50 "
                  f"{figures[name]['multi_index_ms']['p50']:.1f} ms", flush=True)
        results[str(size)] = figures
    path = results_write("clusters", {
        "command": f".venv/bin/python -m bench.clusters --sizes {args.sizes}",
        "config": {"clients": args.clients, "viral": args.viral, "memes": args.memes, "threshold": 31,
                   "repeats": args.repeats, "seed": args.seed},
        "results": results}, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
