"""Safe image decoding with Pillow (no torch), shared by upload validation and the engine."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 rotate by 90 or 270 degrees, swapping width and height.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
# What Pillow raises on broken or truncated data while loading pixels.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """A decoded RGB image; width and height are the original's, after EXIF orientation."""

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int


def image_decode(
    data: bytes,
    *,
    allowed_formats: Collection[str] = DEFAULT_FORMATS,
    max_pixels: int = 40_000_000,
    max_bytes: int | None = None,
    draft_size: tuple[int, int] | None = None,
) -> DecodedImage:
    """Decode untrusted image bytes into an RGB image, safely.

    Args:
        data: the encoded image.
        allowed_formats: Pillow format names accepted; anything else is rejected unread.
        max_pixels: largest width*height accepted, checked before any pixel is decoded.
        max_bytes: largest encoded size accepted, if any.
        draft_size: the smallest size the caller needs. JPEGs are decoded scaled down
            toward it (draft mode, fast); any image still at least twice as large is then
            reduced by a whole factor, so no more than that size's worth of pixels is held.

    Returns:
        The first frame as RGB (alpha composited on white), with the original size.

    Raises:
        ImageRejected: code "image_empty", "image_too_large", "image_format",
            "image_too_many_pixels" or "image_corrupt".
    """
    _check_size(data, max_bytes)
    img = _open(data, allowed_formats)
    width, height = _oriented_size(img)
    if width * height > max_pixels:
        raise ImageRejected(
            "image_too_many_pixels", f"image has {width}x{height} pixels; at most {max_pixels} are allowed"
        )
    image_format = str(img.format)
    if image_format == "JPEG" and draft_size is not None:
        img.draft("RGB", draft_size)
    frames = _load_first_frame(img)
    rgb = _to_rgb(_transposed(img))
    if draft_size is not None:
        rgb = _reduced(rgb, draft_size)
    return DecodedImage(image=rgb, format=image_format, width=width, height=height, frames=frames)


def _reduced(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` shrunk by the largest whole factor that keeps it at least `size` (box filter)."""
    factor = min(img.width // max(1, size[0]), img.height // max(1, size[1]))
    return img.reduce(factor) if factor >= 2 else img


def image_reencode(decoded: DecodedImage, *, quality: int = 90) -> bytes:
    """Re-encode as a baseline JPEG without EXIF or any other metadata (strips GPS, etc.)."""
    buffer = BytesIO()
    decoded.image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _check_size(data: bytes, max_bytes: int | None) -> None:
    if not data:
        raise ImageRejected("image_empty", "the image is empty (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageRejected("image_too_large", f"image is {len(data)} bytes; at most {max_bytes} are allowed")


def _open(data: bytes, allowed_formats: Collection[str]) -> Image.Image:
    """Identify the format from the header only; no pixel is decoded yet."""
    formats = [name.upper() for name in allowed_formats]
    try:
        return Image.open(BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected("image_too_many_pixels", str(err)) from err
    except UnidentifiedImageError as err:
        allowed = ", ".join(formats)
        raise ImageRejected("image_format", f"not a recognised image of an allowed format ({allowed})") from err
    except _DECODE_ERRORS as err:
        raise ImageRejected("image_corrupt", f"image header is corrupt: {err}") from err


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    width, height = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        # A broken EXIF block must not reject an otherwise good image.
        orientation = 1
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def _load_first_frame(img: Image.Image) -> int:
    """Load the first frame's pixels; return the frame count (counting seeks through frames)."""
    try:
        frames = int(getattr(img, "n_frames", 1))
        img.seek(0)
        img.load()
        return frames
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected("image_too_many_pixels", str(err)) from err
    except _DECODE_ERRORS as err:
        raise ImageRejected("image_corrupt", f"image data is corrupt or truncated: {err}") from err


def _transposed(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS:
        # A broken EXIF block must not reject an otherwise good image.
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
