"""The reader role: RapidOCR beside the VLM reader (the generator's OCR prompt), on the same drawn memes.

Run: .venv/bin/python -m bench.ocr [--images 12] [--generator PATH_OR_HUB_ID]
Writes bench/results/ocr.json: images/s (wall), CPU seconds per image (this process, all threads),
and word recall (the share of the drawn words found, by exact upper-case match) for each reader.
Without --generator the VLM reader is the tiny random-weight generator: its speed is a floor for
the code path, and its recall is that of noise (a hub checkpoint such as SmolVLM-256M is the
fair comparison where the hub is reachable).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bench.common import results_write
from vlm_engine.generation import PROMPTS, GeneratorRole
from vlm_engine.reading import OcrReaderRole

MEME_TEXTS = (
    ("I HATE YOU",), ("WHEN THEY SAY", "GO BACK TO YOUR COUNTRY"), ("I HATE MONDAYS",),
    ("FREE MONEY", "CALL NOW"), ("MY NEIGHBOURS ARE", "THE KINDEST PEOPLE"), ("NOBODY:", "ME AT 3AM"),
)


def memes(count: int) -> list[tuple[Image.Image, list[str]]]:
    """`count` memes: black capitals on a light background, 640×360, with the words drawn."""
    font = ImageFont.load_default(size=34)
    drawn = []
    for index in range(count):
        lines = MEME_TEXTS[index % len(MEME_TEXTS)]
        image = Image.new("RGB", (640, 360), (235, 235 - 10 * (index % 5), 220))
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(lines):
            draw.text((30, 40 + row * 80), line, fill="black", font=font)
        drawn.append((image, [word for line in lines for word in line.split()]))
    return drawn


def word_recall(found: Sequence[str], wanted: Sequence[str]) -> float:
    """The share of the drawn words present among the words read (upper-case, punctuation kept)."""
    seen = {word.upper() for text in found for word in text.split()}
    return sum(word.upper() in seen for word in wanted) / max(1, len(wanted))


def measured(read: Callable[[list[Image.Image]], list[str]], samples: list[tuple[Image.Image, list[str]]]
             ) -> dict[str, Any]:
    images = [image for image, _ in samples]
    read(images[:1])  # warm-up: sessions, allocators, first-call compilation
    wall, cpu = time.perf_counter(), time.process_time()
    texts = read(images)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    recalls = [word_recall([text], wanted) for text, (_, wanted) in zip(texts, samples)]
    return {"images": len(images), "images_per_s": round(len(images) / wall, 3),
            "cpu_s_per_image": round(cpu / len(images), 4), "wall_s_per_image": round(wall / len(images), 4),
            "word_recall": round(sum(recalls) / len(recalls), 4), "example": texts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--generator", default="", help="VLM checkpoint (default: the tiny random one)")
    args = parser.parse_args()
    samples = memes(args.images)
    reader = OcrReaderRole.load("rapidocr")
    results = {"rapidocr": measured(lambda images: [r.text for r in reader.read(images)], samples)}
    with tempfile.TemporaryDirectory() as tiny:
        generator_path = args.generator or _tiny_generator(tiny)
        generator = GeneratorRole.load(generator_path, device="cpu", dtype="float32")
        vlm = measured(lambda images: generator.generate(images, [PROMPTS["ocr"]] * len(images),
                                                          max_new_tokens=24), samples)
    results["vlm"] = {**vlm, "checkpoint": args.generator or "tiny random weights", "real": generator.real}
    payload = {"command": ".venv/bin/python -m bench.ocr", "reader_version": reader.version, "readers": results,
               "note": ("Both readers see the same images, one call for the whole set. RapidOCR runs "
                        "detection per image and batches the text lines; the VLM reader generates for the "
                        "whole set in one generate call.")}
    print(results_write("ocr", payload))
    for name, row in results.items():
        print(f"{name:9s} {row['images_per_s']:8.2f} images/s  {row['cpu_s_per_image']:.3f} CPU s/image  "
              f"recall {row['word_recall']:.2f}")


def _tiny_generator(directory: str) -> str:
    from vlm_engine.tiny_generator import tiny_generator_write

    return str(tiny_generator_write(directory))


if __name__ == "__main__":
    main()
