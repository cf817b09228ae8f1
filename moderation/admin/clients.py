"""Admin of the API side: API keys, webhook endpoints and the delivery log."""
from __future__ import annotations

from django.contrib import admin

from moderation.admin.display import short_id_html
from moderation.models import ApiKey, WebhookDelivery, WebhookEndpoint


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "hashed_key", "created_at"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["client", "url", "is_active", "created_at"]
    exclude = ["secret"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: read-only, filterable by state."""

    class Media:
        css = {"all": ["moderation/review.css"]}  # short ids that never wrap

    list_display = ["short_id", "short_post", "post_state", "state", "attempts", "last_status_code",
                    "next_attempt_at", "delivered_at"]
    list_display_links = ["short_id"]
    list_filter = ["state"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    show_full_result_count = False

    @admin.display(description="id")
    def short_id(self, delivery: WebhookDelivery) -> str:
        return short_id_html(delivery.pk)

    @admin.display(description="post")
    def short_post(self, delivery: WebhookDelivery) -> str:
        return short_id_html(delivery.post_id)

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
