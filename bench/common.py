"""Shared by the benchmarks: machine description, result files, and summary statistics."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "transformers", "Pillow", "numpy", "Django", "celery", "psycopg")


def machine() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": _cpu_model(), "git": _git_revision(),
            "versions": {name: _version(name) for name in PACKAGES}}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {"n": len(samples), "mean": statistics.fmean(samples), "p50": percentile(samples, 50),
            "p95": percentile(samples, 95), "p99": percentile(samples, 99), "min": min(samples), "max": max(samples)}


def results_write(name: str, payload: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    """Write ``<directory>/<name>.json`` (default bench/results) with the machine and the date beside the figures."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


class BenchmarkFailed(RuntimeError):
    """One side of a comparison failed: no ratio may be reported."""


def ratio(numerator: float, denominator: float) -> float:
    if not (numerator > 0 and denominator > 0):
        raise BenchmarkFailed(f"cannot form a ratio of {numerator} and {denominator}")
    return numerator / denominator
