"""URL patterns of API v1 (mounted under ``api/v1/`` by ``moderation.urls``)."""
from __future__ import annotations

from django.urls import path
from moderation.api.appeals import PostAppealsApi
from moderation.api.banks import (BankDetailApi, BankEntriesApi, BankEntryDetailApi, BankExportApi, BankImportApi,
                                  BanksApi)
from moderation.api.images import PostImageApi, PostThumbnailApi
from moderation.api.notices import PostNoticesApi
from moderation.api.posts import PostDetailApi, PostsApi
from moderation.api.requests import (PostCaptionApi, PostGroundingApi, PostQuestionApi, RequestDetailApi,
                                     SearchApi)
from moderation.api.schema import DocsApi, SchemaApi
from moderation.api.statements import PostStatementApi
from moderation.api.webhooks import WebhookApi

urlpatterns = [
    path("posts/", PostsApi.as_view(), name="posts"),
    path("posts/<str:post_id>/", PostDetailApi.as_view(), name="post-detail"),
    path("posts/<str:post_id>/image/", PostImageApi.as_view(), name="post-image"),
    path("posts/<str:post_id>/image/thumbnail/", PostThumbnailApi.as_view(), name="post-thumbnail"),
    path("posts/<str:post_id>/questions/", PostQuestionApi.as_view(), name="post-questions"),
    path("posts/<str:post_id>/groundings/", PostGroundingApi.as_view(), name="post-groundings"),
    path("posts/<str:post_id>/captions/", PostCaptionApi.as_view(), name="post-captions"),
    path("posts/<str:post_id>/notices/", PostNoticesApi.as_view(), name="post-notices"),
    path("posts/<str:post_id>/appeals/", PostAppealsApi.as_view(), name="post-appeals"),
    path("posts/<str:post_id>/statement/", PostStatementApi.as_view(), name="post-statement"),
    path("requests/<str:request_id>/", RequestDetailApi.as_view(), name="request-detail"),
    path("search/", SearchApi.as_view(), name="search"),
    path("webhook/", WebhookApi.as_view(), name="webhook"),
    path("banks/", BanksApi.as_view(), name="banks"),
    path("banks/<str:bank_id>/", BankDetailApi.as_view(), name="bank-detail"),
    path("banks/<str:bank_id>/entries/", BankEntriesApi.as_view(), name="bank-entries"),
    path("banks/<str:bank_id>/entries/<str:entry_id>/", BankEntryDetailApi.as_view(), name="bank-entry-detail"),
    path("banks/<str:bank_id>/import/", BankImportApi.as_view(), name="bank-import"),
    path("banks/<str:bank_id>/export/", BankExportApi.as_view(), name="bank-export"),
    path("schema/", SchemaApi.as_view(), name="schema"),
    path("docs/", DocsApi.as_view(), name="docs"),
]
