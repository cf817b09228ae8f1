"""The client's webhook endpoint: set it (a new secret each time), read it with recent deliveries."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from moderation.api.base import BaseApi
from moderation.models import WebhookDelivery, WebhookEndpoint
from moderation.errors import NotFound
from moderation.services.webhooks import webhook_endpoint_set


class DeliveryOutputSerializer(serializers.ModelSerializer):
    post_id = serializers.UUIDField()

    class Meta:
        model = WebhookDelivery
        fields = ["id", "post_id", "post_state", "state", "attempts", "last_status_code", "last_error",
                  "next_attempt_at", "created_at", "delivered_at"]


class WebhookOutputSerializer(serializers.ModelSerializer):
    deliveries = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "is_active", "created_at", "deliveries"]

    def get_deliveries(self, endpoint: WebhookEndpoint) -> list[dict]:
        recent = endpoint.deliveries.order_by("-created_at")[:20]
        return list(DeliveryOutputSerializer(recent, many=True).data)


class WebhookApi(BaseApi):
    class InputSerializer(serializers.Serializer):
        url = serializers.URLField(max_length=2000)

        class Meta:
            ref_name = "WebhookInput"

    class SecretOutputSerializer(serializers.Serializer):
        url = serializers.URLField()
        secret = serializers.CharField(help_text="Signing secret; shown only in this response.")

        class Meta:
            ref_name = "WebhookSecret"

    @extend_schema(responses=WebhookOutputSerializer, operation_id="webhook_retrieve")
    def get(self, request: Request) -> Response:
        endpoint = WebhookEndpoint.objects.filter(client=request.user).first()
        if endpoint is None:
            raise NotFound("not_found", "No webhook is configured.")
        return Response(WebhookOutputSerializer(endpoint).data)

    @extend_schema(request=InputSerializer, responses=SecretOutputSerializer, operation_id="webhook_set")
    def put(self, request: Request) -> Response:
        data = self.body_validated(self.InputSerializer, request.data)
        endpoint, secret = webhook_endpoint_set(client=request.user, url=data["url"])
        return Response({"url": endpoint.url, "secret": secret})
