"""When a failed delivery is tried again: the one backoff schedule of webhooks and statement submissions."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from django.utils import timezone


def retry_at(*, attempts: int, delays: Sequence[float], now: datetime | None = None) -> datetime | None:
    """When the next try is due after ``attempts`` failed ones (the n-th failure waits ``delays[n-1]``
    seconds), or None once the delays are spent and the caller should give up."""
    if attempts > len(delays):
        return None
    return (now or timezone.now()) + timedelta(seconds=delays[attempts - 1])
