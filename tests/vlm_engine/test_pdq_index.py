"""The multi-index finds exactly what a linear scan finds, for indexed rows and rows added since."""
from __future__ import annotations

import numpy as np
import pytest

from vlm_engine.pdq import PdqHashInvalid, pdq_distance, pdq_hex_parse
from vlm_engine.pdq_index import PdqIndex, hamming_distances, hashes_from_hex


def flipped(row: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    unpacked = np.unpackbits(row)
    unpacked[rng.choice(256, size=bits, replace=False)] ^= 1
    return np.packbits(unpacked)


@pytest.mark.parametrize("threshold", [0, 15, 31, 40])
def test_search_equals_a_linear_scan(threshold):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(threshold)
    hashes = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    index = PdqIndex(hashes, np.arange(5000, dtype=np.int64) * 10)
    for row in rng.choice(5000, 20, replace=False):
        query = flipped(hashes[row], int(rng.integers(0, threshold + 1)), rng)
        scan = hamming_distances(hashes, query)
        expected = sorted((int(scan[i]), int(i) * 10) for i in np.flatnonzero(scan <= threshold))

        assert [(m.distance, m.id) for m in index.search(query, threshold=threshold)] == expected
        assert (int(scan[row]), int(row) * 10) in expected


def test_rows_added_later_match_at_once_and_survive_the_rebuild():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    index = PdqIndex(rng.integers(0, 256, (100, 32), dtype=np.uint8), np.arange(100, dtype=np.int64))
    late = rng.integers(0, 256, (5000, 32), dtype=np.uint8)

    index.add(late[:1], np.asarray([-1], dtype=np.int64))
    assert [m.id for m in index.search(flipped(late[0], 31, rng), threshold=31)] == [-1]
    index.add(late[1:], np.arange(1000, 5999, dtype=np.int64))  # past the tail's limit: rebuilt

    assert len(index) == 5100
    assert [m.id for m in index.search(late[4000], threshold=0)] == [4999]
    assert [m.id for m in index.search(flipped(late[0], 20, rng), threshold=31)] == [-1]


def test_rows_of_the_wrong_shape_are_refused():  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="rows of 32 bytes"):
        PdqIndex().add(np.zeros((2, 31), dtype=np.uint8), np.arange(2, dtype=np.int64))


def test_hex_helpers():  # type: ignore[no-untyped-def]
    assert pdq_hex_parse(" " + "AB" * 32 + "\n") == "ab" * 32
    assert pdq_distance("0" * 64, "0" * 63 + "7") == 3
    assert hashes_from_hex(["ff" + "00" * 31])[0, :2].tolist() == [255, 0]
    with pytest.raises(PdqHashInvalid):
        pdq_hex_parse("0x" + "0" * 62)


@pytest.mark.parametrize(("rows", "widths"), [(10, [8] * 32), (5000, [13] * 4 + [12] * 17),
                                              (10_000_000, [24] * 3 + [23] * 8)])
def test_chunks_are_about_log2_rows_wide_and_cover_every_bit(rows, widths):  # type: ignore[no-untyped-def]
    from vlm_engine.pdq_index import chunk_layout, chunk_values

    layout = chunk_layout(rows)

    assert [w for _, w in layout] == widths
    assert [s for s, _ in layout] == [sum(widths[:i]) for i in range(len(widths))]
    row = np.packbits(np.arange(256) % 3 == 0).reshape(1, 32)  # bits 0, 3, 6, …
    bits = "".join("1" if i % 3 == 0 else "0" for i in range(256))
    assert [int(chunk_values(row, s, w)[0]) for s, w in layout] == [int(bits[s:s + w], 2) for s, w in layout]
