"""A multi-index hashing (MIH) index of PDQ hashes for Hamming-radius search, in numpy.

Multi-index hashing (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with
Multi-Index Hashing", CVPR 2012): the 256 bits are cut into ``m`` chunks, and each chunk
gets its own table from chunk value to the rows holding it. By the pigeonhole principle,
two hashes within distance ``r`` agree within ``r // m`` bits on at least one chunk, so a
query probes, in every table, the chunk values within that radius of its own, and only the
rows found there are compared in full. The result is exact: the same rows a linear scan finds.

Chunks are about log2(rows) bits wide (8 to 24), so a probe finds about one row: at 10M
hashes, 11 chunks of 23-24 bits, ~3,100 probes and a few thousand rows compared per query at
HMA's threshold of 31. Each table is a counting sort: row numbers ordered by chunk value, plus
an offset per possible value, so a probe is two array reads. Rows added after the build sit in
a tail that is scanned linearly and folded in by a rebuild once it holds a sixteenth of the
rows, so a new hash matches at once. FAISS's ``IndexBinaryMultiHash`` is the same idea in C++;
the project does not depend on FAISS (``bench/hashes.py`` measures both against a linear scan).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

HASH_BYTES = 32
HASH_BITS = HASH_BYTES * 8
_MIN_CHUNK_BITS, _MAX_CHUNK_BITS = 8, 23
# The tail is folded into the tables once it holds this share of the indexed rows.
_TAIL_SHARE = 1 / 16
_TAIL_MIN = 4096


@dataclass(frozen=True)
class PdqMatch:
    """An indexed row within the searched distance."""

    id: int
    distance: int


def _flip_masks(width: int, radius: int) -> NDArray[np.uint32]:
    """Every ``width``-bit mask with at most ``radius`` bits set: the probes around a chunk value."""
    masks = [0]
    for count in range(1, min(radius, width) + 1):
        masks += [sum(1 << bit for bit in bits) for bits in itertools.combinations(range(width), count)]
    return np.asarray(masks, dtype=np.uint32)


def chunk_layout(rows: int) -> list[tuple[int, int]]:
    """(first bit, width) of each chunk: about log2(rows) bits wide, so a probe finds about one row."""
    bits = min(_MAX_CHUNK_BITS, max(_MIN_CHUNK_BITS, round(math.log2(max(rows, 1)))))
    count = HASH_BITS // bits
    base, wider = divmod(HASH_BITS, count)
    widths = [base + 1] * wider + [base] * (count - wider)
    starts = [sum(widths[:i]) for i in range(count)]
    return list(zip(starts, widths))


def chunk_values(hashes: NDArray[np.uint8], start: int, width: int) -> NDArray[np.uint32]:
    """Bits ``start`` to ``start + width`` (at most 24 wide) of each row, as integers."""
    first = start // 8
    window = np.zeros(len(hashes), dtype=np.uint32)
    for i in range(4):  # the four bytes from the chunk's first one hold it: (start % 8) + 24 <= 32
        if first + i < HASH_BYTES:
            window |= hashes[:, first + i].astype(np.uint32) << np.uint32(24 - 8 * i)
    shifted = window >> np.uint32(32 - start % 8 - width)
    values: NDArray[np.uint32] = shifted & np.uint32((1 << width) - 1)
    return values


def hashes_from_hex(values: list[str]) -> NDArray[np.uint8]:
    """Rows of 32 bytes from 64-digit hex strings (already validated)."""
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(len(values), HASH_BYTES)


def hamming_distances(hashes: NDArray[np.uint8], query: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Distance in bits from ``query`` (32 bytes) to each row of ``hashes``: a linear scan."""
    distances: NDArray[np.int64] = np.bitwise_count(np.bitwise_xor(hashes, query)).sum(axis=1, dtype=np.int64)
    return distances


class PdqIndex:
    """Exact radius search over PDQ hashes (rows of 32 bytes) with integer ids."""

    def __init__(self, hashes: NDArray[np.uint8] | None = None, ids: NDArray[np.int64] | None = None) -> None:
        # Indexed rows, covered by the tables.
        self._hashes = np.empty((0, HASH_BYTES), dtype=np.uint8)
        self._ids = np.empty(0, dtype=np.int64)
        self._layout: list[tuple[int, int]] = []
        self._order: list[NDArray[np.int32]] = []
        self._offsets: list[NDArray[np.int32]] = []
        # The tail: rows added since, in buffers that double when full (an add never copies the index).
        self._tail_hashes = np.empty((_TAIL_MIN, HASH_BYTES), dtype=np.uint8)
        self._tail_ids = np.empty(_TAIL_MIN, dtype=np.int64)
        self._tail = 0
        self._masks: dict[tuple[int, int], NDArray[np.uint32]] = {}
        if hashes is not None and ids is not None:
            self._hashes, self._ids = self._checked(hashes, ids)
            self.rebuild()

    def __len__(self) -> int:
        return len(self._ids) + self._tail

    @property
    def nbytes(self) -> int:
        """Memory held by the hashes, ids and tables."""
        tables = sum(o.nbytes for o in self._order) + sum(o.nbytes for o in self._offsets)
        return int(self._hashes.nbytes + self._ids.nbytes + self._tail_hashes.nbytes + self._tail_ids.nbytes + tables)

    @staticmethod
    def _checked(hashes: NDArray[np.uint8], ids: NDArray[np.int64]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES or len(hashes) != len(ids):
            raise ValueError(f"expected rows of {HASH_BYTES} bytes and as many ids, got {hashes.shape}, {len(ids)}")
        return np.ascontiguousarray(hashes, dtype=np.uint8), np.asarray(ids, dtype=np.int64)

    def add(self, hashes: NDArray[np.uint8], ids: NDArray[np.int64]) -> None:
        """Append rows; they are searchable at once (through the tail) and indexed at the next rebuild,
        which runs here once the tail holds a sixteenth of the indexed rows."""
        hashes, ids = self._checked(hashes, ids)
        needed = self._tail + len(ids)
        if needed > len(self._tail_ids):
            size = max(needed, 2 * len(self._tail_ids))
            self._tail_hashes = np.concatenate([self._tail_hashes[: self._tail],
                                                np.empty((size - self._tail, HASH_BYTES), dtype=np.uint8)])
            self._tail_ids = np.concatenate([self._tail_ids[: self._tail], np.empty(size - self._tail, dtype=np.int64)])
        self._tail_hashes[self._tail:needed], self._tail_ids[self._tail:needed] = hashes, ids
        self._tail = needed
        if self._tail > max(_TAIL_MIN, int(len(self._ids) * _TAIL_SHARE)):
            self.rebuild()

    def rebuild(self) -> None:
        """Index every row, the tail included: chunks sized for the row count, one counting sort each."""
        if self._tail:
            self._hashes = np.concatenate([self._hashes, self._tail_hashes[: self._tail]])
            self._ids = np.concatenate([self._ids, self._tail_ids[: self._tail]])
            self._tail = 0
        self._layout = chunk_layout(len(self._ids))
        self._order, self._offsets = [], []
        for start, width in self._layout:
            values = chunk_values(self._hashes, start, width)
            self._order.append(np.argsort(values, kind="stable").astype(np.int32))
            counts = np.bincount(values, minlength=1 << width)
            self._offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))

    def search(self, query: NDArray[np.uint8], *, threshold: int) -> list[PdqMatch]:
        """The rows within ``threshold`` bits of ``query`` (32 bytes), nearest first."""
        rows = self._candidates(query, threshold)  # a row met in two tables is compared twice
        distances = hamming_distances(self._hashes[rows], query)
        tail = hamming_distances(self._tail_hashes[: self._tail], query)
        close, tail_close = distances <= threshold, tail <= threshold
        found = dict(zip(self._ids[rows[close]].tolist() + self._tail_ids[: self._tail][tail_close].tolist(),
                         distances[close].tolist() + tail[tail_close].tolist()))
        return [PdqMatch(id=int(i), distance=int(d)) for i, d in sorted(found.items(), key=lambda item: (item[1], item[0]))]

    def _candidates(self, query: NDArray[np.uint8], threshold: int) -> NDArray[np.int64]:
        if len(self._ids) == 0:
            return np.empty(0, dtype=np.int64)
        radius = threshold // len(self._layout)
        row = query.reshape(1, HASH_BYTES)
        parts: list[NDArray[np.int32]] = []
        for (start, width), order, offsets in zip(self._layout, self._order, self._offsets):
            masks = self._masks.get((width, radius))
            if masks is None:
                masks = self._masks[(width, radius)] = _flip_masks(width, radius)
            probes = (masks ^ chunk_values(row, start, width)[0]).astype(np.int64)
            begins, lengths = offsets[probes], offsets[probes + 1] - offsets[probes]
            total = int(lengths.sum())
            if total:
                # Every row number in the probed ranges, without a Python loop over the ranges.
                positions = np.arange(total) + np.repeat(begins - (np.cumsum(lengths) - lengths), lengths)
                parts.append(order[positions])
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)
