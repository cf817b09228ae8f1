"""The embedded default: SQLite, files on disk, a file-system broker, DEBUG on, loopback only."""
from __future__ import annotations

from .base import *  # noqa: F401,F403

DEBUG = True

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (WhiteNoise warns when it is missing)
