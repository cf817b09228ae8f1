"""Post endpoints: submit, list and detail."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi
from moderation.api.idempotency import idempotent_response
from moderation.api.schema_support import BinaryFileField, JsonObjectSchemaField
from moderation.api.serializers import PostDetailOutputSerializer, PostOutputSerializer
from moderation.models import Decision, PostState
from moderation.selectors.posts import post_get, post_list
from moderation.selectors.reviews import DECIDED_BY_A_PERSON, review_outcomes
from moderation.errors import ServiceError
from moderation.services.posts import post_metadata_validate, post_submit


class JsonObjectField(JsonObjectSchemaField):
    """Accepts a JSON object, or a string holding one (multipart forms send strings)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except (ValueError, RecursionError):
                raise serializers.ValidationError("Must be a JSON object.")
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        post_metadata_validate(metadata=data)  # nesting, NUL and size, before anything walks it again
        return data


class PostCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request: Request) -> Any:
        # DRF answers a bad cursor with 404, which reads as "no such resource"; it is a bad parameter.
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ServiceError("cursor_invalid", "The cursor is not one this API returned; start without it.")

    def get_page_size(self, request: Request) -> int:
        # DRF silently ignores a bad page_size; a client sending one has a bug worth hearing about.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ServiceError("page_size_invalid", f"page_size must be an integer from 1 to {self.max_page_size}.")
        return int(raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters


class PostsApi(BaseApi):
    pagination_class = PostCursorPagination
    error_statuses = (409, 413, 422)
    query_parameters = frozenset({"status", "decision", "cursor", "page_size"})
    field_codes = {"metadata": "metadata_invalid", "text": "text_invalid"}

    class InputSerializer(serializers.Serializer):
        image = BinaryFileField(required=False, allow_empty_file=True)
        text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, default="")
        external_id = serializers.CharField(required=False, max_length=255, allow_blank=False)
        metadata = JsonObjectField(required=False)

        class Meta:
            ref_name = "PostInput"

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=PostState.choices, required=False, allow_blank=True)
        decision = serializers.ChoiceField(choices=Decision.choices, required=False, allow_blank=True)

    @extend_schema(request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
                   responses={200: PostOutputSerializer, 202: PostOutputSerializer}, operation_id="posts_submit",
                   parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                                description="Replays the first response to retries of this key.")])
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, Mapping):
            raise ServiceError("invalid", "The body must be a JSON object or a form.")
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return self._submit(request)
        return idempotent_response(request=request, key=key, handler=self._submit)

    def _submit(self, request: Request) -> Response:
        if len(request.FILES.getlist("image")) > 1 or set(request.FILES) - {"image"}:
            raise ServiceError("too_many_files", "Send at most one file, in the field 'image'.")
        data = self.body_validated(self.InputSerializer, request.data)
        post, created = post_submit(client=request.user, **data)
        body = PostOutputSerializer(post, context={"request": request}).data
        return Response(body, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)

    @extend_schema(parameters=[FilterSerializer], responses=PostOutputSerializer(many=True),
                   operation_id="posts_list")
    def get(self, request: Request) -> Response:
        filters = {k: v for k, v in self._validated(self.FilterSerializer, request.query_params).items() if v}
        paginator = PostCursorPagination()
        page = paginator.paginate_queryset(post_list(client=request.user, **filters), request, view=self)
        outcomes = review_outcomes(post_ids=[post.pk for post in page if post.state in DECIDED_BY_A_PERSON])
        return paginator.get_paginated_response(
            PostOutputSerializer(page, many=True, context={"request": request, "review_outcomes": outcomes}).data)

    @staticmethod
    def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class PostDetailApi(BaseApi):
    @extend_schema(responses=PostDetailOutputSerializer, operation_id="posts_retrieve",
                   parameters=[OpenApiParameter("post_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
    def get(self, request: Request, post_id: str) -> Response:
        post = post_get(client=request.user, post_id=post_id)
        return Response(PostDetailOutputSerializer(post, context={"request": request}).data)
