"""Tests for the OCR reader: real words and boxes from drawn memes, in original pixels, feeding the scores."""

from __future__ import annotations

import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vlm_engine.cascade import classifier_text
from vlm_engine.clip import ClipRole
from vlm_engine.config import EngineConfig
from vlm_engine.engine import Engine
from vlm_engine.reading import OcrReaderRole, Reading, ocr_device
from vlm_engine.types import Category, Policy, PostInput

pytestmark = pytest.mark.slow

Box = tuple[float, float, float, float]


def meme(lines: list[str], *, size: tuple[int, int], font_size: int) -> tuple[Image.Image, dict[str, Box]]:
    """Black words on white, one line per entry, and where Pillow drew each word."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    drawn: dict[str, Box] = {}
    for row, line in enumerate(lines):
        x, y = font_size // 2, font_size // 2 + row * 2 * font_size
        for word in line.split():
            left, top, right, bottom = draw.textbbox((x, y), word, font=font)
            draw.text((x, y), word, fill="black", font=font)
            drawn[word] = (float(left), float(top), float(right), float(bottom))
            x = int(right) + font_size // 4  # about one space
    return image, drawn


def _jpeg(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _assert_boxes_near(reading: Reading, drawn: dict[str, Box], slack: float) -> None:
    """Each word's box holds the middle of its ink and no neighbour's; it is at most `slack` wider and
    taller than the ink (RapidOCR's word boxes are line high and reach into the following space)."""
    middles = {word: ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) for word, box in drawn.items()}
    for word in reading.words:
        x0, y0, x1, y1 = word.box
        left, top, right, bottom = drawn[word.text]
        inside = [text for text, (mx, my) in middles.items() if x0 <= mx <= x1 and y0 <= my <= y1]
        assert inside == [word.text], (word, drawn[word.text])
        assert (x1 - x0 - (right - left), y1 - y0 - (bottom - top)) < (slack, slack), (word, drawn[word.text])


def test_reads_the_words_of_drawn_memes_with_their_boxes(reader: OcrReaderRole) -> None:
    hate, hate_drawn = meme(["I HATE YOU"], size=(480, 160), font_size=40)
    country, country_drawn = meme(["WHEN THEY SAY", "GO BACK TO YOUR COUNTRY"], size=(640, 200), font_size=30)

    first, second = reader.read([hate, country])

    assert (first.text, [w.text for w in first.words]) == ("I HATE YOU", ["I", "HATE", "YOU"])
    assert second.text == "WHEN THEY SAY\nGO BACK TO YOUR COUNTRY"
    assert [w.text for w in second.words] == "WHEN THEY SAY GO BACK TO YOUR COUNTRY".split()
    assert min(w.score for w in (*first.words, *second.words)) >= 0.5
    _assert_boxes_near(first, hate_drawn, slack=40)
    _assert_boxes_near(second, country_drawn, slack=40)


def test_a_blank_image_reads_nothing(reader: OcrReaderRole) -> None:
    assert reader.read([Image.new("RGB", (64, 64), "white")]) == [Reading(text="", words=())]


def test_unknown_reader_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown OCR reader 'tesseract'"):
        OcrReaderRole.load("tesseract")


@pytest.fixture(scope="module")
def ocr_engine(tiny_dir: Path, reader: OcrReaderRole) -> Engine:
    """Tiny CLIP with the real reader; nobody is looked at closer (look_closer above every score)."""
    config = EngineConfig.for_profile("tiny", tiny_dir=str(tiny_dir), grounder="", generator="",
                                      reader="rapidocr", look_closer=2.0)
    clip = ClipRole.load(str(tiny_dir / "clip"), device="cpu", dtype="float32")
    return Engine(config, clip, reader=reader)


def test_words_of_a_draft_decoded_jpeg_come_back_in_original_pixels(ocr_engine: Engine) -> None:
    image, drawn = meme(["I HATE YOU"], size=(4096, 2048), font_size=160)
    post = PostInput(key="big", image=_jpeg(image), text="")
    decoded = ocr_engine.decode([post])[0]
    assert decoded is not None and decoded.image.size == (2048, 1024)  # the reader's draft, half size

    result = ocr_engine.analyze([post], _policy())[0]

    assert (result.ocr_text, [w.text for w in result.ocr_words]) == ("I HATE YOU", ["I", "HATE", "YOU"])
    # Drawn at 4096 px wide, read at 2048: unscaled boxes would hold no drawn word's middle.
    _assert_boxes_near(Reading(text="", words=result.ocr_words), drawn, slack=160)
    assert "+ocr:rapidocr@3.10.0" in result.model_version and result.timings_ms["read"] > 0


def test_read_text_feeds_the_scores_of_every_post(ocr_engine: Engine) -> None:
    image, _ = meme(["GO BACK TO YOUR COUNTRY"], size=(640, 120), font_size=30)
    post = PostInput(key="p", image=_jpeg(image), text="a holiday photo")

    result = ocr_engine.analyze([post], _policy())[0]

    expected = ocr_engine.clip.embed_texts([classifier_text(post.text, "GO BACK TO YOUR COUNTRY")])[0]
    assert result.text_embedding is not None
    assert np.allclose(result.text_embedding, expected, atol=1e-6)
    assert (result.groundings, result.caption) == ((), None)  # not looked at closer, read all the same
    assert ocr_engine.roles_real() == {"embedder": False, "reader": True}
    assert result.no_checkpoint == ("embedder",)


def test_the_engine_module_does_not_import_rapidocr_until_a_reader_loads() -> None:
    script = "import vlm_engine.engine, vlm_engine.reading, sys; print('rapidocr' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"


def _policy() -> Policy:
    return Policy(version="ocr-1", benign_prompts=("a normal everyday photo",),
                  categories=(Category(slug="hate", name="Hate", prompts=("hate",)),))


@pytest.mark.parametrize(("device", "providers", "runs_on"), [
    ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cpu"),
    ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:0"),
    ("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:1"),
    ("cuda", ["AzureExecutionProvider", "CPUExecutionProvider"], "cpu"),  # the pip onnxruntime
])
def test_the_reader_runs_on_the_worker_s_gpu_only_where_onnx_runtime_can(
    device: str, providers: list[str], runs_on: str
) -> None:
    where, note = ocr_device(device, providers)

    assert where == runs_on
    if device.startswith("cuda") and runs_on == "cpu":
        assert "install onnxruntime-gpu" in note and "AzureExecutionProvider, CPUExecutionProvider" in note


def test_a_cuda_worker_without_the_cuda_provider_reads_on_the_cpu_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    # The runtime as PyPI's onnxruntime wheel builds it, whatever this host has installed.
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with caplog.at_level("WARNING", logger="vlm_engine.reading"):
        role = OcrReaderRole.load("rapidocr", device="cuda")

    assert role.device == "cpu"
    assert caplog.messages == [role.device_note]
    assert role.device_note.startswith("OCR reader on the CPU although the worker's device is cuda")
