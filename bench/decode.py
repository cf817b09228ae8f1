"""Image decode path: a 12-megapixel JPEG decoded in draft mode at the model's input size vs in full.

Run: .venv/bin/python -m bench.decode [--repeats 15]
Writes bench/results/decode.json. Both sides run in this invocation; the ratio is full / draft.
"""
from __future__ import annotations

import argparse
import io
import time
from typing import Callable

import numpy as np
from PIL import Image

from bench.common import ratio, results_write, summary
from vlm_engine.imaging import image_decode

WIDTH, HEIGHT = 4000, 3000  # 12 MP, a phone photo
MODEL_INPUT = 224  # CLIP ViT-B/32; the engine asks for twice the input side


def photo_like_jpeg() -> bytes:
    """A 12 MP JPEG with photo-like content (smooth gradients plus noise), quality 90."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x / WIDTH) * 255, (y / HEIGHT) * 255, ((x + y) / (WIDTH + HEIGHT)) * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        samples.append((time.process_time() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    data = photo_like_jpeg()
    side = 2 * MODEL_INPUT
    full = timed(lambda: image_decode(data, max_pixels=50_000_000), args.repeats)
    draft = timed(lambda: image_decode(data, max_pixels=50_000_000, draft_size=(side, side)), args.repeats)
    decoded = image_decode(data, max_pixels=50_000_000, draft_size=(side, side))
    payload = {
        "command": ".venv/bin/python -m bench.decode",
        "input": {"width": WIDTH, "height": HEIGHT, "bytes": len(data), "draft_size": side},
        "decoded_size_in_draft_mode": list(decoded.image.size),
        "cpu_ms_per_image": {"full": summary(full), "draft": summary(draft)},
        "samples_ms": {"full": full, "draft": draft},
        "ratio_full_over_draft": ratio(summary(full)["p50"], summary(draft)["p50"]),
    }
    path = results_write("decode", payload)
    print(f"full {summary(full)['p50']:.1f} ms, draft {summary(draft)['p50']:.1f} ms per 12 MP JPEG "
          f"(CPU time, p50) -> {payload['ratio_full_over_draft']:.1f}x; wrote {path}")


if __name__ == "__main__":
    main()
