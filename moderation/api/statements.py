"""Statement endpoint: the statement of reasons of a post's restricting decision."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi
from moderation.selectors.posts import post_get
from moderation.errors import NotFound
from moderation.services.statements import statement_for_post


class PostStatementApi(BaseApi):
    query_parameters = frozenset()

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, operation_id="posts_statement_retrieve")
    def get(self, request: Request, post_id: str) -> Response:
        statement = statement_for_post(post=post_get(client=request.user, post_id=post_id))
        if statement is None:
            raise NotFound("no_statement", "Nothing restricts this post, so it has no statement of reasons.")
        return Response(statement)
