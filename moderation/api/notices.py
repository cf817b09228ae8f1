"""Notice endpoints: report one of the client's posts, list the notices it carries."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi, BoundedJSONParser
from moderation.models import Notice
from moderation.selectors.posts import post_get
from moderation.selectors.notices import notice_counts, notices_of_post
from moderation.services.notices import EXPLANATION_LIMIT, REFERENCE_LIMIT, notice_submit


class NoticeOutputSerializer(serializers.ModelSerializer):
    post_id = serializers.UUIDField()
    reporter_reference = serializers.CharField(allow_null=True)

    class Meta:
        model = Notice
        fields = ["id", "post_id", "reporter_type", "reporter_reference", "category", "explanation", "outcome",
                  "created_at", "decided_at"]

    def to_representation(self, instance: Notice) -> dict:
        body = super().to_representation(instance)
        body["reporter_reference"] = body["reporter_reference"] or None
        body["outcome"] = body["outcome"] or None
        return body


class PostNoticesApi(BaseApi):
    class InputSerializer(serializers.Serializer):
        reporter_type = serializers.ChoiceField(choices=Notice.ReporterType.choices)
        category = serializers.CharField(min_length=1, max_length=64)
        explanation = serializers.CharField(min_length=1, max_length=EXPLANATION_LIMIT)
        reporter_reference = serializers.CharField(max_length=REFERENCE_LIMIT, required=False, allow_blank=True)

        class Meta:
            ref_name = "NoticeInput"

    parser_classes = [BoundedJSONParser]
    error_statuses = (409,)
    query_parameters = frozenset()
    field_codes = {"reporter_type": "reporter_type_invalid", "category": "category_invalid",
                   "explanation": "explanation_invalid", "reporter_reference": "reporter_reference_invalid"}

    @extend_schema(request=InputSerializer, responses={201: NoticeOutputSerializer}, operation_id="posts_notices_create")
    def post(self, request: Request, post_id: str) -> Response:
        data = self.body_validated(self.InputSerializer, request.data)
        notice = notice_submit(client=request.user, post_id=post_id, **data)
        return Response(NoticeOutputSerializer(notice).data, status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="posts_notices_list", responses=inline_serializer(
        "PostNotices", {"counts": serializers.DictField(child=serializers.IntegerField()),
                        "results": NoticeOutputSerializer(many=True)}))
    def get(self, request: Request, post_id: str) -> Response:
        post = post_get(client=request.user, post_id=post_id)
        return Response({"counts": notice_counts(post=post),
                         "results": NoticeOutputSerializer(notices_of_post(post=post), many=True).data})
