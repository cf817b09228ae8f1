"""The base view every v1 endpoint shares: API-key auth, JSON errors, OpenAPI schema."""
from __future__ import annotations

from typing import Any, Callable

from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from moderation.api.authentication import ApiKeyAuthentication
from moderation.api.errors import api_exception_handler


class BaseApi(APIView):
    """Self-contained auth, parsing and errors, so a host site's REST_FRAMEWORK settings don't change
    the API (only DEFAULT_SCHEMA_CLASS must name drf-spectacular's AutoSchema; see checks.py)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self) -> Callable[..., Any]:
        return api_exception_handler
