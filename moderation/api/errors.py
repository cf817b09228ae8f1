"""JSON errors with a stable ``code`` for every API failure."""
from __future__ import annotations

import logging
from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from moderation.errors import ServiceError

logger = logging.getLogger(__name__)
SERVER_ERROR_CODE = "server_error"

CODES_BY_CLASS = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "parse_error",
    exceptions.Throttled: "throttled",
    exceptions.ValidationError: "invalid",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return _server_error(exc, context)
    code = next((c for cls, c in CODES_BY_CLASS.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(code, "The request is invalid.", response.data)
    else:
        response.data = error_body(code, str(getattr(exc, "detail", exc)))
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Api-Key"
    return response


def _server_error(exc: Exception, context: dict[str, Any]) -> Response:
    """Any other exception: logged with its traceback, answered as JSON without its text."""
    request = context.get("request")
    logger.error("Unexpected error in %s %s", getattr(request, "method", "?"), getattr(request, "path", "?"),
                 exc_info=exc)
    set_rollback()
    return Response(error_body(SERVER_ERROR_CODE, "An unexpected error occurred."),
                    status=status.HTTP_500_INTERNAL_SERVER_ERROR)
