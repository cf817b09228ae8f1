"""A multi-index hashing (MIH) index of PDQ hashes for Hamming-radius search, in numpy.

Multi-index hashing (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with
Multi-Index Hashing", CVPR 2012): the 256 bits are cut into 16 chunks of 16 bits, and each
chunk gets its own table from chunk value to the rows holding it. By the pigeonhole
principle, two hashes within distance ``r`` agree within ``r // 16`` bits on at least one
chunk, so a query probes, in every table, the chunk values within that radius of its own
(17 values per table at HMA's threshold of 31), and only the rows found there are compared
in full. The result is exact: the same rows a linear scan finds.

Each table is a counting sort: row numbers ordered by chunk value, plus 65,537 offsets, so a
probe is two array reads. Rows added after the build sit in a small tail that is scanned
linearly and folded in by the next rebuild, so a new hash matches at once. This is the index
FAISS calls ``IndexBinaryMultiHash``; it is written here because the project installs no
FAISS (see ``bench/hashes.py``, which measures both against a linear scan).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

HASH_BYTES = 32
CHUNK_BITS = 16
CHUNKS = HASH_BYTES * 8 // CHUNK_BITS
_CHUNK_VALUES = 1 << CHUNK_BITS
# The tail is folded into the tables once it holds this share of the indexed rows.
_TAIL_SHARE = 1 / 16
_TAIL_MIN = 4096


@dataclass(frozen=True)
class PdqMatch:
    """An indexed row within the searched distance."""

    id: int
    distance: int


def _flip_masks(radius: int) -> NDArray[np.uint16]:
    """Every 16-bit mask with at most ``radius`` bits set: the probes around a chunk value."""
    masks = [0]
    for count in range(1, min(radius, CHUNK_BITS) + 1):
        masks += [sum(1 << bit for bit in bits) for bits in itertools.combinations(range(CHUNK_BITS), count)]
    return np.asarray(masks, dtype=np.uint16)


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
        self._order: list[NDArray[np.int32]] = []
        self._offsets: list[NDArray[np.int64]] = []
        # The tail: rows added since, in buffers that double when full (an add never copies the index).
        self._tail_hashes = np.empty((_TAIL_MIN, HASH_BYTES), dtype=np.uint8)
        self._tail_ids = np.empty(_TAIL_MIN, dtype=np.int64)
        self._tail = 0
        self._masks: dict[int, NDArray[np.uint16]] = {}
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
        """Index every row, the tail included: one counting sort per 16-bit chunk."""
        if self._tail:
            self._hashes = np.concatenate([self._hashes, self._tail_hashes[: self._tail]])
            self._ids = np.concatenate([self._ids, self._tail_ids[: self._tail]])
            self._tail = 0
        chunks = self._chunks(self._hashes)
        self._order, self._offsets = [], []
        for column in range(CHUNKS):
            values = chunks[:, column]
            self._order.append(np.argsort(values, kind="stable").astype(np.int32))
            counts = np.bincount(values, minlength=_CHUNK_VALUES)
            self._offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def search(self, query: NDArray[np.uint8], *, threshold: int) -> list[PdqMatch]:
        """The rows within ``threshold`` bits of ``query`` (32 bytes), nearest first."""
        rows = self._candidates(query, threshold)
        distances = hamming_distances(self._hashes[rows], query)
        tail = hamming_distances(self._tail_hashes[: self._tail], query)
        close, tail_close = distances <= threshold, tail <= threshold
        found = sorted(zip(distances[close].tolist() + tail[tail_close].tolist(),
                           self._ids[rows[close]].tolist() + self._tail_ids[: self._tail][tail_close].tolist()))
        return [PdqMatch(id=int(i), distance=int(d)) for d, i in found]

    def _candidates(self, query: NDArray[np.uint8], threshold: int) -> NDArray[np.int64]:
        if len(self._ids) == 0:
            return np.empty(0, dtype=np.int64)
        radius = threshold // CHUNKS
        if radius not in self._masks:
            self._masks[radius] = _flip_masks(radius)
        masks = self._masks[radius]
        parts: list[NDArray[np.int32]] = []
        for column, value in enumerate(self._chunks(query.reshape(1, HASH_BYTES))[0]):
            probes = np.bitwise_xor(masks, value)
            starts, ends = self._offsets[column][probes], self._offsets[column][probes.astype(np.int64) + 1]
            parts.extend(self._order[column][s:e] for s, e in zip(starts.tolist(), ends.tolist()) if e > s)
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)

    @staticmethod
    def _chunks(hashes: NDArray[np.uint8]) -> NDArray[np.uint16]:
        return np.ascontiguousarray(hashes).view(">u2").astype(np.uint16)
