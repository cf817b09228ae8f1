"""OpenAPI support: the error body every endpoint may answer with, declared on every operation."""
from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Statuses any authenticated v1 endpoint can answer: bad input, no or bad key, not found,
# over the throttle. Views add their own (413, 409, 422, 503) with ``error_statuses``.
COMMON_ERROR_STATUSES = (400, 401, 404, 429)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `image_too_large`.")
    message = serializers.CharField()
    details = serializers.JSONField(required=False, help_text="Per-field errors, when the request was invalid.")

    class Meta:
        ref_name = "Error"


@extend_schema_field(OpenApiTypes.BINARY)
class BinaryFileField(serializers.FileField):
    """A file upload, documented as binary content (multipart)."""


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectSchemaField(serializers.JSONField):
    """Documented as a JSON object."""


class ModerationAutoSchema(AutoSchema):
    """Adds the JSON error responses to every operation of the views that use it."""

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        bodies = super()._get_response_bodies(direction)
        statuses = COMMON_ERROR_STATUSES + tuple(getattr(self.view, "error_statuses", ()))
        error = self._get_response_for_code(ErrorSerializer, "400")
        for status in statuses:
            bodies.setdefault(str(status), error)
        return bodies
