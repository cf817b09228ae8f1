"""URL patterns of API v1 (mounted under ``api/v1/`` by ``moderation.urls``)."""
from __future__ import annotations

from django.urls import path
from moderation.api.posts import PostDetailApi, PostsApi
from moderation.api.schema import DocsApi, SchemaApi

urlpatterns = [
    path("posts/", PostsApi.as_view(), name="posts"),
    path("posts/<uuid:post_id>/", PostDetailApi.as_view(), name="post-detail"),
    path("schema/", SchemaApi.as_view(), name="schema"),
    path("docs/", DocsApi.as_view(), name="docs"),
]
