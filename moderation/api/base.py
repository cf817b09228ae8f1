"""The base view every v1 endpoint shares: API-key auth, throttling, a body cap, JSON errors."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed, ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from moderation.api.authentication import ApiKeyAuthentication
from moderation.api.errors import api_exception_handler
from moderation.api.schema_support import ModerationAutoSchema
from moderation.api.throttling import ClientRateThrottle, UnauthenticatedAddressThrottle
from moderation.conf import moderation_settings
from moderation.errors import ServiceError

# Room for the text, metadata and multipart framing on top of the image itself.
BODY_OVERHEAD_BYTES = 256 * 1024


class BoundedJSONParser(JSONParser):
    """JSON bodies; nesting deep enough to exhaust Python's recursion is a ``parse_error``, not a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.")


class BaseApi(APIView):
    """Self-contained auth, parsing and errors, so a host site's REST_FRAMEWORK settings don't change
    the API (only DEFAULT_SCHEMA_CLASS must name drf-spectacular's AutoSchema; see checks.py)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [BoundedJSONParser, MultiPartParser, FormParser]
    renderer_classes = [JSONRenderer]
    throttle_classes = [ClientRateThrottle]
    schema = ModerationAutoSchema()
    error_statuses: tuple[int, ...] = ()
    # The query parameters a GET understands; others are refused, so a typo ("stauts=") is not
    # silently ignored. None: the view takes no query parameters worth checking.
    query_parameters: frozenset[str] | None = None
    # The stable code of an invalid body field (e.g. "metadata" -> "metadata_invalid"); fields not
    # named here are reported as ``invalid`` with DRF's details.
    field_codes: Mapping[str, str] = {}

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

    def perform_authentication(self, request: Request) -> None:
        # Requests without a valid key spend a budget per address; counted after the lookup, so a
        # valid key costs no cache access and is never refused because of its neighbours (a NAT, a
        # proxy). A request with no key costs no lookup: its refusal is free.
        try:
            authenticated = bool(request.user and request.user.is_authenticated)
        except AuthenticationFailed:
            self._unauthenticated_throttle(request)
            raise
        if not authenticated:
            self._unauthenticated_throttle(request)

    def _unauthenticated_throttle(self, request: Request) -> None:
        throttle = UnauthenticatedAddressThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait())

    def get_exception_handler(self) -> Callable[..., Any]:
        return api_exception_handler

    def body_validated(self, serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
        """The body through ``serializer_class``: unknown fields refused, known field errors by their code."""
        if not isinstance(data, Mapping):
            raise ServiceError("invalid", "The body must be a JSON object or a form.")
        serializer = serializer_class(data=data)
        unknown = sorted(set(data) - set(serializer.fields))
        if unknown:
            raise ServiceError("unknown_field", f"Unknown field(s): {', '.join(unknown)}.")
        if not serializer.is_valid():
            for field, detail in serializer.errors.items():
                code = self.field_error_code(field, detail)
                if code:
                    raise ServiceError(code, f"{field}: {_first_message(detail)}")
            raise serializers.ValidationError(serializer.errors)
        return dict(serializer.validated_data)

    def field_error_code(self, field: str, detail: Any) -> str | None:
        return self.field_codes.get(field)


def _first_message(detail: Any) -> str:
    while isinstance(detail, (list, dict)) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail)
