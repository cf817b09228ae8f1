"""Per-client request limits, configured by MODERATION['THROTTLE_RATE']."""
from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from moderation.conf import moderation_settings


class ClientRateThrottle(SimpleRateThrottle):
    """One bucket per API client (its user), shared by every process through the cache."""

    scope = "moderation_client"

    def get_rate(self) -> str | None:
        return moderation_settings.THROTTLE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def allow_request(self, request: Request, view: Any) -> bool:
        # The rate is read per request so that settings changes apply without a restart.
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
