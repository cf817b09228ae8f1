"""PDQ perceptual hashes of images (Meta's photo-matching hash), in the hex form HMA exchanges.

A PDQ hash is 256 bits written as 64 lowercase hex digits, the first bit of the hash being
the most significant bit of the first digit (the order ThreatExchange's tools use). Two
images are near-duplicates when their hashes differ in few bits (HMA matches at ≤ 31).
``pdqhash`` (a C++ extension, in the ``engine`` extra) is imported only when an image is
hashed, so the web process can validate and compare hashes without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

PDQ_BITS = 256
PDQ_HEX_LENGTH = PDQ_BITS // 4
# HMA's and ThreatExchange's default match distance for PDQ.
PDQ_DEFAULT_THRESHOLD = 31
# Below this quality PDQ hashes of flat or tiny images are unreliable (ThreatExchange's cut-off).
PDQ_MIN_QUALITY = 50
_HEX = re.compile(r"[0-9a-f]{64}")


class PdqHashInvalid(ValueError):
    """A string that is not a PDQ hash (64 hex digits)."""


@dataclass(frozen=True)
class PdqHash:
    """A hash and its quality (0-100; low for flat or featureless images)."""

    hex: str
    quality: int


def pdq_hex_parse(value: str) -> str:
    """The canonical (lowercase) form of a PDQ hex string.

    Raises:
        PdqHashInvalid: not exactly 64 hexadecimal digits.
    """
    canonical = value.strip().lower()
    if not _HEX.fullmatch(canonical):
        raise PdqHashInvalid(f"a PDQ hash is {PDQ_HEX_LENGTH} hexadecimal digits, got {value[:80]!r}")
    return canonical


def pdq_compute(image: Image.Image | bytes) -> PdqHash:
    """Hash an image (a decoded Pillow image or encoded bytes).

    Returns:
        The hash in hex and its quality.
    """
    import pdqhash  # type: ignore[import-untyped]  # C extension without type information

    if isinstance(image, bytes):
        with Image.open(BytesIO(image)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))
    return PdqHash(hex=pdq_bits_to_hex(np.asarray(bits, dtype=np.uint8)), quality=int(quality))


def pdq_bits_to_hex(bits: NDArray[np.uint8]) -> str:
    """256 bits (0/1, first bit most significant) as 64 hex digits."""
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def pdq_hex_to_bytes(value: str) -> bytes:
    """The 32 bytes of a (valid) hex hash."""
    return bytes.fromhex(pdq_hex_parse(value))


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance, in bits, between two hex hashes."""
    return (int(pdq_hex_parse(a), 16) ^ int(pdq_hex_parse(b), 16)).bit_count()
