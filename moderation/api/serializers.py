"""Output shapes shared by the post endpoints."""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from moderation.models import Analysis, Post
from moderation.selectors import engine_request_summary


class AnalysisOutputSerializer(serializers.ModelSerializer):
    policy_version = serializers.IntegerField(source="policy.version")

    class Meta:
        model = Analysis
        fields = ["id", "decision", "top_category", "risk", "scores", "explanation", "model_version",
                  "policy_version", "timings_ms", "created_at"]


class PostOutputSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="state")
    url = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    analysis = AnalysisOutputSerializer(source="current_analysis", allow_null=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = Post
        fields = ["id", "url", "external_id", "status", "text", "image", "metadata", "analysis",
                  "attempts", "error", "created_at", "updated_at"]

    def get_url(self, post: Post) -> str:
        path = reverse("moderation:post-detail", kwargs={"post_id": post.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_image(self, post: Post) -> dict[str, Any] | None:
        if not post.image:
            return None
        return {"width": post.image_width, "height": post.image_height, "format": post.image_format,
                "sha256": post.image_sha256}

    def get_error(self, post: Post) -> str | None:
        return post.last_error or None


class PostDetailOutputSerializer(PostOutputSerializer):
    """The detail view adds the post's ad-hoc questions, groundings and captions."""

    requests = serializers.SerializerMethodField()

    class Meta(PostOutputSerializer.Meta):
        fields = PostOutputSerializer.Meta.fields + ["requests"]

    def get_requests(self, post: Post) -> list[dict[str, Any]]:
        recent = post.requests.order_by("-created_at")[:50]
        return [{**engine_request_summary(r), "created_at": r.created_at.isoformat()} for r in recent]
