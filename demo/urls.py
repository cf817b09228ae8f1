"""URLs of the demo site: the admin and the moderation app.

Uploaded images are never served from MEDIA_URL: only the app's permission-checked image
endpoint (``/api/v1/posts/{id}/image/``) hands them out.
"""
from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("moderation.urls")),
    path("", RedirectView.as_view(url="/api/v1/docs/", permanent=False)),
]

