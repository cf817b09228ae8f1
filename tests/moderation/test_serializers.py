"""The written-out output shapes equal what DRF's declared fields would render."""
from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from moderation.api.serializers import AnalysisOutputSerializer, PostDetailOutputSerializer, PostOutputSerializer
from moderation.models import EngineRequest, PostState
from tests.factories import AnalysisFactory, PostFactory, post_in_review

pytestmark = pytest.mark.django_db


def generic(serializer: serializers.ModelSerializer, instance: object) -> dict:
    """What DRF renders from the declared fields, bypassing the written-out ``to_representation``."""
    return dict(serializers.ModelSerializer.to_representation(serializer, instance))


def posts() -> list:
    queued = PostFactory(external_id="ext-1", metadata={"lang": "en", "n": [1, 2]})
    failed = PostFactory(state=PostState.FAILED, last_error="worker restarted after 3 attempts", attempts=3)
    reviewed = post_in_review(priority=0.7, image_size=(40, 30))
    return [queued, failed, reviewed]


def test_post_shapes_match_the_declared_fields():
    request = APIRequestFactory().get("/api/v1/posts/")
    for post in posts():
        for serializer_class in (PostOutputSerializer, PostDetailOutputSerializer):
            serializer = serializer_class(post, context={"request": request})
            assert serializer.data == generic(serializer, post)
            assert list(serializer.data) == list(generic(serializer, post))


def test_detail_shape_with_requests_and_the_analysis_alone():
    post = post_in_review(priority=0.2)
    EngineRequest.objects.create(post=post, client=post.client, kind="question", params={"question": "Why?"})
    serializer = PostDetailOutputSerializer(post, context={"request": None})
    assert serializer.data == generic(serializer, post)
    assert len(serializer.data["requests"]) == 1
    analysis = AnalysisFactory(post=post)
    assert AnalysisOutputSerializer(analysis).data == generic(AnalysisOutputSerializer(analysis), analysis)
