"""Wall-time bookkeeping for the stages of an engine call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stage_timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time, in milliseconds, to `timings[stage]`.

    It adds rather than overwrites: the cascade embeds and scores a second time for the
    posts whose image text was read after the first scoring.
    """
    start = time.perf_counter()
    yield
    elapsed = (time.perf_counter() - start) * 1000.0
    timings[stage] = round(timings.get(stage, 0.0) + elapsed, 3)
