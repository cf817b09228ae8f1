"""Request limits: per API client (THROTTLE_RATE), and per address for requests without a valid key
(ANON_THROTTLE_RATE). Buckets live in Django's default cache, which must be shared by every process
(a system check refuses a process-local cache in deployment)."""
from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from moderation.conf import moderation_settings


class SettingsRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is a MODERATION setting, read per request so that changes apply at once."""

    rate_setting = ""

    def get_rate(self) -> str | None:
        return getattr(moderation_settings, self.rate_setting)

    def allow_request(self, request: Request, view: Any) -> bool:
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class ClientRateThrottle(SettingsRateThrottle):
    """One bucket per API client (its user)."""

    scope = "moderation_client"
    rate_setting = "THROTTLE_RATE"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class UnauthenticatedAddressThrottle(SettingsRateThrottle):
    """One bucket per client address, spent by requests that carry no valid API key."""

    scope = "moderation_unauthenticated"
    rate_setting = "ANON_THROTTLE_RATE"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}


def client_address(request: Request) -> str:
    """The client's address: the last one in CLIENT_IP_HEADER (what the nearest proxy appended), else the peer."""
    header = moderation_settings.CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header, "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return str(request.META.get("REMOTE_ADDR", ""))
