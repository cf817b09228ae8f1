"""Output shapes shared by the post endpoints.

The declared fields describe each shape (the OpenAPI document is generated from them);
``to_representation`` writes the same shape out directly. DRF builds a ModelSerializer's
fields anew for every instance it renders, which cost more than the rest of a submit's
Python work; ``tests/moderation/test_serializers.py`` holds both paths to the same output.
"""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from moderation.models import Analysis, EngineRequest, Post, ReviewDecision
from moderation.selectors.posts import engine_request_summary
from moderation.selectors.reviews import review_summary


class AnalysisOutputSerializer(serializers.ModelSerializer):
    policy_version = serializers.IntegerField(source="policy.version")

    class Meta:
        model = Analysis
        fields = ["id", "decision", "top_category", "risk", "scores", "explanation", "model_version",
                  "policy_version", "timings_ms", "created_at"]

    def to_representation(self, analysis: Analysis) -> dict[str, Any]:
        return {"id": analysis.pk, "decision": analysis.decision, "top_category": analysis.top_category,
                "risk": analysis.risk, "scores": analysis.scores, "explanation": analysis.explanation,
                "model_version": analysis.model_version, "policy_version": analysis.policy.version,
                "timings_ms": analysis.timings_ms, "created_at": _DATETIME.to_representation(analysis.created_at)}


class ReviewOutputSerializer(serializers.Serializer):
    """The reviewers' standing decision on a post that is ``reviewed``, or ``restored`` by an appeal's overturn."""

    verdict = serializers.ChoiceField(choices=[ReviewDecision.Verdict.VIOLATING, ReviewDecision.Verdict.NOT_VIOLATING])
    category = serializers.CharField(allow_null=True, help_text="The category a violating post breaks.")
    decided_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ReviewOutcome"


_DATETIME = serializers.DateTimeField()
_ANALYSIS = AnalysisOutputSerializer()


class PostOutputSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="state")
    url = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    analysis = AnalysisOutputSerializer(source="current_analysis", allow_null=True)
    error = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()

    class Meta:
        model = Post
        fields = ["id", "url", "external_id", "status", "text", "image", "metadata", "analysis", "review",
                  "attempts", "error", "created_at", "updated_at"]

    def to_representation(self, post: Post) -> dict[str, Any]:
        analysis = post.current_analysis
        return {"id": str(post.pk), "url": self.get_url(post), "external_id": post.external_id,
                "status": post.state, "text": post.text, "image": self.get_image(post), "metadata": post.metadata,
                "analysis": None if analysis is None else _ANALYSIS.to_representation(analysis),
                "review": self.get_review(post), "attempts": post.attempts, "error": self.get_error(post),
                "created_at": _DATETIME.to_representation(post.created_at),
                "updated_at": _DATETIME.to_representation(post.updated_at)}

    def get_url(self, post: Post) -> str:
        path = reverse("moderation:post-detail", kwargs={"post_id": post.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_image(self, post: Post) -> dict[str, Any] | None:
        if not post.image:
            return None
        path = reverse("moderation:post-image", kwargs={"post_id": post.pk})
        request = self.context.get("request")
        return {"width": post.image_width, "height": post.image_height, "format": post.image_format,
                "sha256": post.image_sha256, "url": request.build_absolute_uri(path) if request else path,
                "pdq": post.pdq_hash or None, "pdq_quality": post.pdq_quality}

    def get_error(self, post: Post) -> str | None:
        return post.last_error or None

    @extend_schema_field(ReviewOutputSerializer(allow_null=True))
    def get_review(self, post: Post) -> dict[str, Any] | None:
        # A list view looks the page's outcomes up in one query and passes them in.
        return review_summary(post=post, outcomes=self.context.get("review_outcomes"))


class PostDetailOutputSerializer(PostOutputSerializer):
    """The detail view adds the post's ad-hoc questions, groundings and captions."""

    requests = serializers.SerializerMethodField()

    class Meta(PostOutputSerializer.Meta):
        fields = PostOutputSerializer.Meta.fields + ["requests"]

    def to_representation(self, post: Post) -> dict[str, Any]:
        return {**super().to_representation(post), "requests": self.get_requests(post)}

    def get_requests(self, post: Post) -> list[dict[str, Any]]:
        recent = post.requests.filter(origin=EngineRequest.Origin.CLIENT).order_by("-created_at")[:50]
        return [{**engine_request_summary(r), "created_at": r.created_at.isoformat()} for r in recent]
