"""OpenAPI schema and Swagger UI views, left out of the schema they serve."""
from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


class SchemaApi(SpectacularAPIView):
    schema = None  # excluded from the document, and a host site's DEFAULT_SCHEMA_CLASS doesn't matter
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    urlconf = "moderation.urls"


class DocsApi(SpectacularSwaggerView):
    schema = None
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    url_name = "moderation:schema"
