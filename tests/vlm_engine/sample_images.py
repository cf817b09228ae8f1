"""Seeded test images, encoded in memory."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image


def image_bytes(size: tuple[int, int], *, seed: int = 0, image_format: str = "PNG") -> bytes:
    """Seeded noise, so resizing and cropping actually change what the model sees."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()
