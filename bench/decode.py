"""Image decode path: 12-megapixel images decoded at the size the model needs vs in full.

Run: .venv/bin/python -m bench.decode [--repeats 15]
Writes bench/results/decode.json. Both sides run in this invocation; each ratio is full / bounded.
1. A JPEG decoded in draft mode (the decoder scales it down) vs in full: decode CPU time.
2. What the worker does per image, for a JPEG and a PNG: decode, then CLIP's image
   preprocessing (PIL, 224 px). Without a size the image reaches the processor at 12 MP;
   with one, a JPEG is drafted and a PNG reduced by a whole factor first.
"""
from __future__ import annotations

import argparse
import io
import time
from typing import Any, Callable

import numpy as np
from PIL import Image

from bench.common import ratio, results_write, summary
from vlm_engine.imaging import image_decode

WIDTH, HEIGHT = 4000, 3000  # 12 MP, a phone photo
MODEL_INPUT = 224  # CLIP ViT-B/32; the engine asks for twice the input side


def photo_like(fmt: str = "JPEG") -> bytes:
    """A 12 MP image with photo-like content (smooth gradients plus noise); JPEG at quality 90."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x / WIDTH) * 255, (y / HEIGHT) * 255, ((x + y) / (WIDTH + HEIGHT)) * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
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
    data = photo_like("JPEG")
    side = 2 * MODEL_INPUT
    full = timed(lambda: image_decode(data, max_pixels=50_000_000), args.repeats)
    draft = timed(lambda: image_decode(data, max_pixels=50_000_000, draft_size=(side, side)), args.repeats)
    decoded = image_decode(data, max_pixels=50_000_000, draft_size=(side, side))
    worker_path = {fmt.lower(): worker_path_measure(encoded, side, args.repeats)
                   for fmt, encoded in (("JPEG", data), ("PNG", photo_like("PNG")))}
    payload = {
        "command": ".venv/bin/python -m bench.decode",
        "input": {"width": WIDTH, "height": HEIGHT, "bytes": len(data), "draft_size": side},
        "decoded_size_in_draft_mode": list(decoded.image.size),
        "cpu_ms_per_image": {"full": summary(full), "draft": summary(draft)},
        "samples_ms": {"full": full, "draft": draft},
        "ratio_full_over_draft": ratio(summary(full)["p50"], summary(draft)["p50"]),
        "decode_and_clip_preprocess": worker_path,
    }
    path = results_write("decode", payload)
    print(f"JPEG decode: full {summary(full)['p50']:.1f} ms, draft {summary(draft)['p50']:.1f} ms per 12 MP image "
          f"(CPU time, p50) -> {payload['ratio_full_over_draft']:.1f}x")
    for fmt, figures in worker_path.items():
        print(f"{fmt.upper()} decode + CLIP preprocessing: full {figures['full']['p50']:.1f} ms, bounded "
              f"{figures['bounded']['p50']:.1f} ms ({figures['bounded_size'][0]}x{figures['bounded_size'][1]}) "
              f"-> {figures['ratio_full_over_bounded']:.1f}x")
    print(f"wrote {path}")


def worker_path_measure(data: bytes, side: int, repeats: int) -> dict[str, Any]:
    """Decode then CLIP's PIL preprocessing, as the worker does, with and without a size."""
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor()  # 224 px shortest edge, centre crop: CLIP ViT-B/32's

    def run(size: tuple[int, int] | None) -> Callable[[], object]:
        return lambda: processor(images=image_decode(data, max_pixels=50_000_000, draft_size=size).image,
                                 return_tensors="pt")

    full, bounded = timed(run(None), repeats), timed(run((side, side)), repeats)
    return {"full": summary(full), "bounded": summary(bounded), "samples_ms": {"full": full, "bounded": bounded},
            "bounded_size": list(image_decode(data, max_pixels=50_000_000, draft_size=(side, side)).image.size),
            "ratio_full_over_bounded": ratio(summary(full)["p50"], summary(bounded)["p50"])}


if __name__ == "__main__":
    main()
