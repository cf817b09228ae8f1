"""Ad-hoc endpoints: ask a question, ground phrases, caption a post; read a request; search."""
from __future__ import annotations

from typing import Any, Callable

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi, BoundedJSONParser
from moderation.conf import moderation_settings
from moderation.models import EngineRequest
from moderation.selectors.posts import uuid_or_not_found
from moderation.errors import NotFound
from moderation.services.requests import post_caption_request, post_grounding_request, post_question_ask
from moderation.services.search import search_posts


class RequestOutputSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="state")
    url = serializers.SerializerMethodField()
    post_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = EngineRequest
        fields = ["id", "url", "post_id", "kind", "params", "status", "result", "error", "model_version",
                  "created_at", "completed_at"]

    def get_url(self, request: EngineRequest) -> str:
        path = reverse("moderation:request-detail", kwargs={"request_id": request.pk})
        http = self.context.get("request")
        return http.build_absolute_uri(path) if http else path


def _accepted(request: Request, created: EngineRequest) -> Response:
    body = RequestOutputSerializer(created, context={"request": request}).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


class _PostRequestApi(BaseApi):
    """POST a JSON body, get 202 and the request's URL; a worker fills in the result.

    The body is validated by ``InputSerializer``, whose limits are read from the settings when it is
    built, so the OpenAPI document and the checks are one thing; the service checks again for its
    other callers (the admin).
    """

    parser_classes = [BoundedJSONParser]  # phrase lists need JSON; a form can't say "a list of one"
    service: Callable[..., EngineRequest]
    InputSerializer: type[serializers.Serializer]

    def post(self, request: Request, post_id: str) -> Response:
        data = self.body_validated(self.InputSerializer, request.data)
        created = type(self).service(client=request.user, post_id=post_id, **data)
        return _accepted(request, created)


class QuestionInputSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {"question": serializers.CharField(min_length=1, max_length=moderation_settings.MAX_QUESTION_LENGTH)}

    class Meta:
        ref_name = "QuestionInput"


class GroundingInputSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        phrase = serializers.CharField(min_length=1, max_length=moderation_settings.MAX_PHRASE_LENGTH)
        return {"phrases": serializers.ListField(child=phrase, min_length=1,
                                                 max_length=moderation_settings.MAX_PHRASES)}

    class Meta:
        ref_name = "GroundingInput"


class CaptionInputSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        return {"prompt": serializers.CharField(required=False, allow_null=True, allow_blank=True,
                                                max_length=moderation_settings.MAX_CAPTION_PROMPT_LENGTH)}

    class Meta:
        ref_name = "CaptionInput"


class PostQuestionApi(_PostRequestApi):
    service = staticmethod(post_question_ask)
    InputSerializer = QuestionInputSerializer
    field_codes = {"question": "question_invalid"}

    @extend_schema(request=QuestionInputSerializer, responses={202: RequestOutputSerializer},
                   operation_id="posts_questions")
    def post(self, request: Request, post_id: str) -> Response:
        return super().post(request, post_id)


class PostGroundingApi(_PostRequestApi):
    service = staticmethod(post_grounding_request)
    InputSerializer = GroundingInputSerializer

    def field_error_code(self, field: str, detail: Any) -> str | None:
        # Errors of single phrases come keyed by their index; the list's own errors as a list.
        return "phrase_invalid" if isinstance(detail, dict) else "phrases_invalid"

    @extend_schema(request=GroundingInputSerializer, responses={202: RequestOutputSerializer},
                   operation_id="posts_groundings")
    def post(self, request: Request, post_id: str) -> Response:
        return super().post(request, post_id)


class PostCaptionApi(_PostRequestApi):
    service = staticmethod(post_caption_request)
    InputSerializer = CaptionInputSerializer
    field_codes = {"prompt": "prompt_invalid"}

    @extend_schema(request=CaptionInputSerializer, responses={202: RequestOutputSerializer},
                   operation_id="posts_captions")
    def post(self, request: Request, post_id: str) -> Response:
        return super().post(request, post_id)


class RequestDetailApi(BaseApi):
    @extend_schema(responses=RequestOutputSerializer, operation_id="requests_retrieve")
    def get(self, request: Request, request_id: str) -> Response:
        found = EngineRequest.objects.filter(pk=uuid_or_not_found(request_id, what="request"), client=request.user,
                                             origin=EngineRequest.Origin.CLIENT).first()
        if found is None:
            raise NotFound("not_found", "No such request.")
        return Response(RequestOutputSerializer(found, context={"request": request}).data)


class SearchApi(BaseApi):
    class FilterSerializer(serializers.Serializer):
        q = serializers.CharField(max_length=500)
        k = serializers.IntegerField(min_value=1, required=False, default=20)

        class Meta:
            ref_name = "SearchFilter"

    class HitSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        url = serializers.URLField()
        score = serializers.FloatField()

        class Meta:
            ref_name = "SearchHit"

    error_statuses = (503,)
    query_parameters = frozenset({"q", "k"})

    @extend_schema(parameters=[FilterSerializer], operation_id="search",
                   responses=inline_serializer("SearchResponse", {"query": serializers.CharField(),
                                                                  "results": HitSerializer(many=True)}))
    def get(self, request: Request) -> Response:
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        k = min(params.validated_data["k"], moderation_settings.SEARCH_MAX_K)
        hits = search_posts(client=request.user, query=params.validated_data["q"], k=k)
        return Response({"query": params.validated_data["q"], "results": [self._hit(request, h) for h in hits]})

    @staticmethod
    def _hit(request: Request, hit: Any) -> dict[str, Any]:
        url = request.build_absolute_uri(reverse("moderation:post-detail", kwargs={"post_id": hit.post_id}))
        return {"id": hit.post_id, "url": url, "score": hit.score}
