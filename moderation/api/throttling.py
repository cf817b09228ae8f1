"""Request limits: per API client (THROTTLE_RATE), and per address for requests without a valid key
(ANON_THROTTLE_RATE). Buckets live in Django's default cache, which must be shared by every process
(a system check refuses a process-local cache in deployment)."""
from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from moderation.conf import moderation_settings


class ClientRateThrottle(SimpleRateThrottle):
    """One bucket per API client (its user)."""

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


class UnauthenticatedAddressThrottle(SimpleRateThrottle):
    """One bucket per client address, filled by requests that carry no valid API key.

    It is read before authentication: once an address has spent its budget, a request from it
    with no key at all is refused before anything else runs.
    """

    scope = "moderation_unauthenticated"

    def get_rate(self) -> str | None:
        return moderation_settings.ANON_THROTTLE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}

    def exhausted(self, request: Request) -> bool:
        return self._history_load(request) and len(self.history) >= self.num_requests

    def record(self, request: Request) -> None:
        if self._history_load(request):
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, self.duration)

    def _history_load(self, request: Request) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return False
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key, self.now = self.get_cache_key(request, None), self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        return True


def client_address(request: Request) -> str:
    """The client's address: the last one in CLIENT_IP_HEADER (what the nearest proxy appended), else the peer."""
    header = moderation_settings.CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header, "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return str(request.META.get("REMOTE_ADDR", ""))
