"""Everything the app serves: API v1 and the health probes. Include with ``path("", include(...))``."""
from __future__ import annotations

from django.urls import include, path

from moderation import health

app_name = "moderation"

urlpatterns = [
    path("api/v1/", include("moderation.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
