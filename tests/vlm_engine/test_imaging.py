"""Tests for safe image decoding: every rejection code, orientation, frames, re-encoding."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pytest
from PIL import Image

from vlm_engine.imaging import ImageRejected, image_decode, image_reencode


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A 1-bit PNG declaring huge dimensions in a few dozen bytes (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00"))
        + _png_chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, image_format: str, **save_args: Any) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **save_args)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = encoded(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    return data[: len(data) // 2]


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


@pytest.mark.parametrize(
    ("make_data", "kwargs", "code"),
    [
        (lambda: b"", {}, "image_empty"),
        (lambda: b"<html><body>hello</body></html>", {}, "image_format"),
        (lambda: SVG, {}, "image_format"),
        (lambda: encoded(Image.new("RGB", (8, 8)), "BMP"), {}, "image_format"),
        (lambda: encoded(Image.new("RGB", (8, 8)), "PNG"), {"allowed_formats": ("JPEG",)}, "image_format"),
        (lambda: png_header_only(20_000, 20_000), {}, "image_too_many_pixels"),
        (lambda: png_header_only(7_000, 7_000), {}, "image_too_many_pixels"),
        (lambda: encoded(Image.new("RGB", (10, 10)), "PNG"), {"max_pixels": 99}, "image_too_many_pixels"),
        (truncated_jpeg, {}, "image_corrupt"),
        (lambda: encoded(Image.new("RGB", (8, 8)), "PNG"), {"max_bytes": 10}, "image_too_large"),
    ],
    ids=[
        "empty", "html", "svg", "bmp", "png-not-allowed", "bomb-pillow", "bomb-ours", "max-pixels", "truncated", "bytes"
    ],
)
def test_image_decode_rejects(make_data: Callable[[], bytes], kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        image_decode(make_data(), **kwargs)
    assert caught.value.code == code
    assert caught.value.message == str(caught.value)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "GIF"])
def test_image_decode_accepts_allowed_formats(image_format: str) -> None:
    decoded = image_decode(encoded(Image.new("RGB", (30, 20), (0, 0, 255)), image_format))
    assert (decoded.format, decoded.width, decoded.height, decoded.frames) == (image_format, 30, 20, 1)
    assert (decoded.image.mode, decoded.image.size) == ("RGB", (30, 20))


def test_image_decode_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = image_decode(encoded(Image.new("RGB", (40, 20), (255, 0, 0)), "JPEG", exif=exif))
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.image.size == (20, 40)


def test_image_decode_gif_first_frame_and_frame_count() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = image_decode(data)
    assert (decoded.format, decoded.frames) == ("GIF", 3)
    assert decoded.image.getpixel((8, 8)) == (255, 0, 0)


def test_image_decode_composites_alpha_on_white() -> None:
    decoded = image_decode(encoded(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"))
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((4, 4)) == (255, 255, 255)


def test_image_decode_jpeg_draft_reduces_pixels_but_keeps_original_size() -> None:
    data = encoded(Image.new("RGB", (800, 600), (0, 128, 0)), "JPEG")
    decoded = image_decode(data, draft_size=(64, 64))
    assert (decoded.width, decoded.height) == (800, 600)
    assert decoded.image.size == (100, 75)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_image_decode_bounds_other_formats_to_a_whole_factor_of_the_needed_size(fmt: str) -> None:
    data = encoded(Image.new("RGB", (1000, 700), (0, 128, 0)), fmt)
    decoded = image_decode(data, draft_size=(160, 160))
    assert (decoded.width, decoded.height) == (1000, 700)
    # min(1000 // 160, 700 // 160) = 4: 250 x 175, still at least 160 on each side.
    assert decoded.image.size == (250, 175)
    assert decoded.image.getpixel((10, 10)) == image_decode(data).image.getpixel((40, 40))
    assert image_decode(data).image.size == (1000, 700)  # no size asked for: full size
    assert image_decode(data, draft_size=(600, 600)).image.size == (1000, 700)  # not twice as large


def test_image_reencode_strips_exif() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "CameraMaker"
    decoded = image_decode(encoded(Image.new("RGB", (40, 20), (255, 0, 0)), "JPEG", exif=exif))
    reopened = Image.open(BytesIO(image_reencode(decoded)))
    assert (reopened.format, reopened.size) == ("JPEG", (20, 40))
    assert dict(reopened.getexif()) == {}
    assert "exif" not in reopened.info
