"""The reader role: the words printed on an image, with their boxes, read by OCR (RapidOCR on ONNX Runtime)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
from PIL import Image

from vlm_engine.registry import role_register
from vlm_engine.types import Word

RAPIDOCR = "rapidocr"
# The generator reads instead, through its OCR prompt, for the posts it looks closer at.
VLM_READER = "vlm"
READERS = (RAPIDOCR, VLM_READER, "")
# Words read with less confidence than this are dropped (RapidOCR's own default is 0.5).
MIN_WORD_SCORE = 0.5
# RapidOCR's detector sees the shorter side at 736 px at least; decoding JPEGs larger wastes time.
READER_IMAGE_SIDE = 1024


@dataclass(frozen=True)
class Reading:
    """The text read from one image: its lines joined, top to bottom, and each word with its box."""

    text: str
    words: tuple[Word, ...]


NO_READING = Reading(text="", words=())


@role_register("reader", names=(RAPIDOCR,), version_prefix="ocr")
class OcrReaderRole:
    """RapidOCR with the detection, orientation and recognition models shipped inside its wheel.

    RapidOCR takes one image per call and batches the text lines of that image through its
    recogniser (`rec_batch_num`); there is no batch call across images. It imports no torch.
    """

    kind = "reader"
    real = True  # its weights are the trained PP-OCR models of the wheel, never random
    image_size = READER_IMAGE_SIDE

    def __init__(self, ocr: Any, *, version: str, min_score: float = MIN_WORD_SCORE) -> None:
        self.ocr = ocr
        self.version = version
        self.min_score = min_score

    @classmethod
    def load(cls, name: str, *, device: str = "cpu", dtype: str = "float32",
             local_files_only: bool = True) -> OcrReaderRole:
        """Load RapidOCR's packaged models (imported here, so processes that never read never import it).

        Args:
            name: "rapidocr" (the only OCR family so far).
            device: a torch-style device string; "cuda…" asks ONNX Runtime for its CUDA provider,
                which RapidOCR falls back from (to the CPU) when the installed runtime lacks it.
            dtype, local_files_only: the factory's common arguments; RapidOCR runs its packaged
                fp32 ONNX models, never downloaded.

        Raises:
            ValueError: `name` is not an OCR reader.
        """
        if name != RAPIDOCR:
            raise ValueError(f"unknown OCR reader {name!r}; expected {RAPIDOCR!r}")
        from rapidocr import RapidOCR

        params: dict[str, Any] = {"Global.log_level": "error", "Global.return_word_box": True,
                                  "Global.text_score": MIN_WORD_SCORE, "Rec.rec_batch_num": 16}
        if device.startswith("cuda"):
            params["EngineConfig.onnxruntime.use_cuda"] = True
        return cls(RapidOCR(params=params), version=f"ocr:rapidocr@{package_version('rapidocr')}")

    def read(self, images: Sequence[Image.Image]) -> list[Reading]:
        """The words of each image, with boxes (x0, y0, x1, y1) in that image's pixels, in order."""
        return [self._read_one(image) for image in images]

    def _read_one(self, image: Image.Image) -> Reading:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        output = self.ocr(bgr)
        if not output.txts:  # nothing read: RapidOCR then fills word_results with a placeholder
            return NO_READING
        lines = [str(text) for text in output.txts]
        words = tuple(word for word in _words(output.word_results) if word.score >= self.min_score)
        return Reading(text="\n".join(line for line in lines if line.strip()), words=words)


def _words(word_results: Any) -> list[Word]:
    """RapidOCR's (text, score, polygon) triples per line; an image without text gives empty entries."""
    lines = [line for line in (word_results or ()) if isinstance(line, (tuple, list))]
    entries = [entry for line in lines for entry in line if isinstance(entry, (tuple, list)) and len(entry) == 3]
    return [Word(text=str(text), box=_polygon_box(polygon), score=float(score))
            for text, score, polygon in entries if str(text).strip()]


def _polygon_box(polygon: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """The axis-aligned box around a (possibly slanted) quadrilateral."""
    xs = [float(point[0]) for point in polygon]
    ys = [float(point[1]) for point in polygon]
    return (min(xs), min(ys), max(xs), max(ys))
