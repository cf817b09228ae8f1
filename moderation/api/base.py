"""The base view every v1 endpoint shares: API-key auth, throttling, a body cap, JSON errors."""
from __future__ import annotations

from typing import Any, Callable

from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from moderation.api.authentication import ApiKeyAuthentication
from moderation.api.errors import api_exception_handler
from moderation.api.schema_support import ModerationAutoSchema
from moderation.api.throttling import ClientRateThrottle
from moderation.conf import moderation_settings
from moderation.services.errors import ServiceError

# Room for the text, metadata and multipart framing on top of the image itself.
BODY_OVERHEAD_BYTES = 256 * 1024


class BaseApi(APIView):
    """Self-contained auth, parsing and errors, so a host site's REST_FRAMEWORK settings don't change
    the API (only DEFAULT_SCHEMA_CLASS must name drf-spectacular's AutoSchema; see checks.py)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    renderer_classes = [JSONRenderer]
    throttle_classes = [ClientRateThrottle]
    schema = ModerationAutoSchema()
    error_statuses: tuple[int, ...] = ()
    # The query parameters a GET understands; others are refused, so a typo ("stauts=") is not
    # silently ignored. None: the view takes no query parameters worth checking.
    query_parameters: frozenset[str] | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Refuse an oversized body from its header, before anything reads or parses it.
        limit = moderation_settings.MAX_UPLOAD_BYTES + BODY_OVERHEAD_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            raise ServiceError("request_too_large", f"The request body exceeds {limit} bytes.", status=413)
        super().initial(request, *args, **kwargs)
        if request.method == "GET" and self.query_parameters is not None:
            unknown = sorted(set(request.query_params) - self.query_parameters)
            if unknown:
                raise ServiceError("unknown_parameter", f"Unknown query parameter(s): {', '.join(unknown)}.")

    def get_exception_handler(self) -> Callable[..., Any]:
        return api_exception_handler
