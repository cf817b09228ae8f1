"""The reader role: the words printed on an image, with their boxes, read by OCR (RapidOCR on ONNX Runtime)."""

from __future__ import annotations

import logging
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
CUDA_PROVIDER = "CUDAExecutionProvider"

logger = logging.getLogger(__name__)


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

    def __init__(
        self, ocr: Any, *, version: str, min_score: float = MIN_WORD_SCORE, device: str = "cpu", device_note: str = ""
    ) -> None:
        self.ocr = ocr
        self.version = version
        self.min_score = min_score
        self.device = device  # where ONNX Runtime runs the models: "cpu" or "cuda:N"
        self.device_note = device_note  # why, in one sentence for the operator

    @classmethod
    def load(cls, name: str, *, device: str = "cpu", dtype: str = "float32",
             local_files_only: bool = True) -> OcrReaderRole:
        """Load RapidOCR's packaged models (imported here, so processes that never read never import it).

        Args:
            name: "rapidocr" (the only OCR family so far).
            device: a torch-style device string; "cuda[:N]" runs the models on that GPU through
                ONNX Runtime's CUDA provider when the installed runtime has it (`onnxruntime-gpu`),
                else on the CPU, with a warning (`ocr_device`).
            dtype, local_files_only: the factory's common arguments; RapidOCR runs its packaged
                fp32 ONNX models, never downloaded.

        Raises:
            ValueError: `name` is not an OCR reader.
        """
        if name != RAPIDOCR:
            raise ValueError(f"unknown OCR reader {name!r}; expected {RAPIDOCR!r}")
        import onnxruntime  # type: ignore[import-untyped]  # ships no type information
        from rapidocr import RapidOCR

        params: dict[str, Any] = {"Global.log_level": "error", "Global.return_word_box": True,
                                  "Global.text_score": MIN_WORD_SCORE, "Rec.rec_batch_num": 16}
        runs_on, note = ocr_device(device, onnxruntime.get_available_providers())
        if runs_on != "cpu":
            params["EngineConfig.onnxruntime.use_cuda"] = True
            params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = int(runs_on.partition(":")[2] or 0)
        (logger.info if runs_on != "cpu" or not device.startswith("cuda") else logger.warning)("%s", note)
        return cls(RapidOCR(params=params), version=f"ocr:rapidocr@{package_version('rapidocr')}", device=runs_on,
                   device_note=note)

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


def ocr_device(device: str, providers: Sequence[str]) -> tuple[str, str]:
    """Where ONNX Runtime can run the OCR models for a worker on `device`, and a sentence saying why.

    Returns:
        ("cuda:N", note) for a CUDA device when `providers` include the CUDA one; else ("cpu", note).
    """
    if not device.startswith("cuda"):
        return "cpu", f"OCR reader on the CPU (the worker's device is {device})."
    index = device.partition(":")[2] or "0"
    if CUDA_PROVIDER in providers:
        return f"cuda:{index}", f"OCR reader on cuda:{index} through ONNX Runtime's {CUDA_PROVIDER}."
    return "cpu", (f"OCR reader on the CPU although the worker's device is {device}: the installed onnxruntime "
                   f"has no {CUDA_PROVIDER} (providers: {', '.join(providers)}); install onnxruntime-gpu instead.")


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
