"""Appeal endpoints: the author contests a restriction of one of the client's posts, and lists the appeals."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi, BoundedJSONParser
from moderation.models import Appeal
from moderation.selectors.appeals import appeals_of_post
from moderation.selectors.posts import post_get
from moderation.services.appeals import STATEMENT_LIMIT, appeal_submit


class AppealOutputSerializer(serializers.ModelSerializer):
    post_id = serializers.UUIDField()
    decision = serializers.ChoiceField(choices=Appeal.Decision.choices, allow_null=True)
    note = serializers.CharField(allow_null=True)

    class Meta:
        model = Appeal
        fields = ["id", "post_id", "statement", "created_at", "decision", "note", "decided_at"]

    def to_representation(self, instance: Appeal) -> dict:
        body = super().to_representation(instance)
        body["decision"] = body["decision"] or None
        body["note"] = body["note"] or None
        return body


class PostAppealsApi(BaseApi):
    class InputSerializer(serializers.Serializer):
        statement = serializers.CharField(min_length=1, max_length=STATEMENT_LIMIT)

        class Meta:
            ref_name = "AppealInput"

    parser_classes = [BoundedJSONParser]
    error_statuses = (409,)
    query_parameters = frozenset()
    field_codes = {"statement": "statement_invalid"}

    @extend_schema(request=InputSerializer, responses={201: AppealOutputSerializer}, operation_id="posts_appeals_create")
    def post(self, request: Request, post_id: str) -> Response:
        data = self.body_validated(self.InputSerializer, request.data)
        appeal = appeal_submit(client=request.user, post_id=post_id, **data)
        return Response(AppealOutputSerializer(appeal).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="posts_appeals_list", responses=AppealOutputSerializer(many=True))
    def get(self, request: Request, post_id: str) -> Response:
        post = post_get(client=request.user, post_id=post_id)
        return Response(AppealOutputSerializer(appeals_of_post(post=post), many=True).data)
