"""A post's image and its thumbnail, for the post's owner (API key) and for staff (admin session)."""
from __future__ import annotations

from django.db.models.fields.files import FieldFile
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request

from moderation.api.authentication import ApiKeyAuthentication
from moderation.api.base import BaseApi
from moderation.selectors.images import post_image_viewable
from moderation.services.images import post_thumbnail_ensure

# Images are never served from MEDIA_URL; these headers stop one from ever running as a page.
IMAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300",
                 "Content-Security-Policy": "default-src 'none'; sandbox", "Content-Disposition": "inline"}


def image_response(file: FieldFile) -> FileResponse:
    response = FileResponse(file.open("rb"), content_type="image/jpeg")
    for header, value in IMAGE_HEADERS.items():
        response[header] = value
    return response


class PostImageApi(BaseApi):
    """Anyone else (anonymous, another client, staff without the view permission) gets a 404."""

    # An API key sees its own posts; an admin session with the posts' view permission sees any
    # (the reviewer dashboard's <img> tags). Both are checked by ``post_image_viewable``.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [AllowAny]
    query_parameters = frozenset()
    metadata_class = None  # OPTIONS describes nothing to someone who may not see the image
    thumbnail = False

    @extend_schema(responses={(200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY)},
                   parameters=[OpenApiParameter("post_id", OpenApiTypes.UUID, OpenApiParameter.PATH)])
    def get(self, request: Request, post_id: str) -> FileResponse:
        post = post_image_viewable(viewer=request.user, post_id=post_id, as_staff=request.auth is None)
        return image_response(post_thumbnail_ensure(post=post) if self.thumbnail else post.image)


class PostThumbnailApi(PostImageApi):
    """The same image, at most 192×144: what lists of posts show."""

    thumbnail = True
