"""PDQ matching at scale: the multi-index (``vlm_engine.pdq_index``) against a linear scan, same run.

Builds ``--hashes`` random PDQ hashes, plants ``--planted`` near-duplicates (each a stored
hash with 1 to ``--threshold`` random bits flipped, the edge included), and measures for
each index: build time, memory, lookup latency (one query at a time, as the worker asks)
at distance <= threshold, recall of the planted duplicates, and the time for a hash added
after the build to match. The linear scan answers a subset of the same queries
(``--linear-queries``; it is slow by design) and every index's answers to that subset must
equal the scan's exactly. When ``faiss`` is importable its ``IndexBinaryMultiHash`` runs too,
with the same number of tables (see ``faiss_case``); the project does not depend on it.

    .venv/bin/python -m bench.hashes --hashes 10000000
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from bench.common import results_write, summary
from vlm_engine.pdq_index import PdqIndex, chunk_layout, hamming_distances

Search = Callable[[NDArray[np.uint8]], set[int]]


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def near_duplicates(hashes: NDArray[np.uint8], *, count: int, threshold: int,
                    rng: np.random.Generator) -> tuple[NDArray[np.int64], NDArray[np.uint8], NDArray[np.int64]]:
    """Rows to plant copies of, the copies (1..threshold bits flipped; a tenth exactly at it), and the flips."""
    rows = rng.choice(len(hashes), size=count, replace=False).astype(np.int64)
    flips = rng.integers(1, threshold + 1, size=count)
    flips[: max(1, count // 10)] = threshold
    bits = np.unpackbits(hashes[rows], axis=1)
    for i, k in enumerate(flips):
        bits[i, rng.choice(256, size=int(k), replace=False)] ^= 1
    return rows, np.packbits(bits, axis=1), flips


def timed_queries(search: Search, queries: NDArray[np.uint8]) -> tuple[list[set[int]], list[float]]:
    answers, millis = [], []
    for query in queries:
        start = time.perf_counter()
        answers.append(search(query))
        millis.append((time.perf_counter() - start) * 1000)
    return answers, millis


def measure(name: str, build: Callable[[], Any], search_of: Callable[[Any], Search],
            add_of: Callable[[Any], Callable[[NDArray[np.uint8]], int]], *, queries: NDArray[np.uint8],
            expected_rows: NDArray[np.int64], reference: list[set[int]], fresh: NDArray[np.uint8]) -> dict[str, Any]:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - start
    memory = rss_bytes() - before
    search = search_of(index)
    search(queries[0])  # warm-up (first-touch pages, lazily built tables)
    answers, millis = timed_queries(search, queries)
    found = sum(int(row) in answer for row, answer in zip(expected_rows, answers))
    agree = all(a == r for a, r in zip(answers, reference))
    add_ms = _new_entry_match_ms(search, add_of(index), fresh)
    print(f"{name}: build {build_s:.1f} s, {memory / 2**20:.0f} MiB, p50 {np.percentile(millis, 50):.2f} ms, "
          f"p99 {np.percentile(millis, 99):.2f} ms, recall {found / len(queries):.4f}, same as scan: {agree}, "
          f"new entry {add_ms:.2f} ms", flush=True)
    return {"build_s": round(build_s, 3), "memory_bytes": memory, "latency_ms": summary(millis),
            "recall": found / len(queries), "same_as_linear_scan": agree, "new_entry_match_ms": round(add_ms, 3),
            "lookups_per_s_one_thread": round(1000 / float(np.mean(millis)), 1)}


def _new_entry_match_ms(search: Search, add: Callable[[NDArray[np.uint8]], int], fresh: NDArray[np.uint8]) -> float:
    """From adding a hash to finding it with a near copy of itself (3 bits off)."""
    copy = np.unpackbits(fresh)
    copy[:3] ^= 1
    start = time.perf_counter()
    new_id = add(fresh)
    hit = new_id in search(np.packbits(copy))
    elapsed = (time.perf_counter() - start) * 1000
    if not hit:
        raise RuntimeError("a new entry did not match")
    return elapsed


Case = tuple[Callable[[], Any], Callable[[Any], Search], Callable[[Any], Callable[[NDArray[np.uint8]], int]]]


def mih_case(hashes: NDArray[np.uint8], threshold: int) -> Case:
    def build() -> PdqIndex:
        return PdqIndex(hashes, np.arange(len(hashes), dtype=np.int64))

    def search_of(index: PdqIndex) -> Search:
        return lambda q: {m.id for m in index.search(q, threshold=threshold)}

    def add_of(index: PdqIndex) -> Callable[[NDArray[np.uint8]], int]:
        def add(h: NDArray[np.uint8]) -> int:
            new_id = len(index)
            index.add(h.reshape(1, 32), np.asarray([new_id], dtype=np.int64))
            return new_id
        return add

    return build, search_of, add_of


def faiss_case(hashes: NDArray[np.uint8], threshold: int) -> Case | None:
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        return None

    def build() -> Any:
        faiss.omp_set_num_threads(1)  # one worker thread, like ours
        # As many tables as ours, of our narrowest chunk width (FAISS's chunks are all one width; the
        # bits left over are not indexed, which keeps the search exact), probing as far as ours do.
        layout = chunk_layout(len(hashes))
        index = faiss.IndexBinaryMultiHash(256, len(layout), min(w for _, w in layout))
        index.nflip = threshold // len(layout)  # default 0: exact chunk matches only (misses some)
        index.add(hashes)
        return index

    def search_of(index: Any) -> Search:
        def search(q: NDArray[np.uint8]) -> set[int]:
            limits, _, labels = index.range_search(q.reshape(1, 32), threshold + 1)  # faiss: distance < radius
            return {int(x) for x in labels[limits[0]:limits[1]]}
        return search

    def add_of(index: Any) -> Callable[[NDArray[np.uint8]], int]:
        def add(h: NDArray[np.uint8]) -> int:
            new_id = int(index.ntotal)
            index.add(h.reshape(1, 32))
            return new_id
        return add

    return build, search_of, add_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=10_000_000)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--linear-queries", type=int, default=50)
    parser.add_argument("--threshold", type=int, default=31)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", default="hashes")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    hashes = rng.integers(0, 256, size=(args.hashes, 32), dtype=np.uint8)
    rows, queries, flips = near_duplicates(hashes, count=args.planted, threshold=args.threshold, rng=rng)
    fresh = rng.integers(0, 256, size=32, dtype=np.uint8)

    linear: Search = lambda q: set(np.flatnonzero(hamming_distances(hashes, q) <= args.threshold).tolist())
    subset = queries[: args.linear_queries]
    reference, linear_ms = timed_queries(linear, subset)
    linear_recall = sum(int(r) in a for r, a in zip(rows, reference)) / len(subset)
    print(f"linear scan: p50 {np.percentile(linear_ms, 50):.1f} ms, p99 {np.percentile(linear_ms, 99):.1f} ms, "
          f"recall {linear_recall:.4f} ({len(subset)} queries)", flush=True)
    results: dict[str, Any] = {
        "linear_scan": {"queries": len(subset), "latency_ms": summary(linear_ms), "recall": linear_recall,
                        "memory_bytes": int(hashes.nbytes)}}
    cases = {"multi_index_numpy": mih_case(hashes, args.threshold), "faiss_binary_multihash": faiss_case(
        hashes, args.threshold)}
    for name, case in cases.items():
        if case is None:
            results[name] = {"skipped": "faiss is not installed"}
            continue
        build, search_of, add_of = case
        measured = measure(name, build, search_of, add_of, queries=queries, expected_rows=rows,
                           reference=reference, fresh=fresh)
        measured["speedup_p50_vs_linear"] = round(float(np.percentile(linear_ms, 50))
                                                  / measured["latency_ms"]["p50"], 1)
        results[name] = measured
        gc.collect()
    path = results_write(args.out, {
        "config": {"hashes": args.hashes, "planted": args.planted, "threshold": args.threshold,
                   "flips": {"min": int(flips.min()), "max": int(flips.max()),
                             "at_threshold": int((flips == args.threshold).sum())},
                   "seed": args.seed, "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
        "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
