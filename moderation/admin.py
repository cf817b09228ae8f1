"""Admin registrations: posts with their analyses and events, policies, API keys."""
from __future__ import annotations

from django.contrib import admin

from moderation.models import Analysis, ApiKey, Category, Policy, Post, PostEvent, WebhookDelivery, WebhookEndpoint


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


class AnalysisInline(ReadOnlyInline):
    model = Analysis
    fields = ["created_at", "decision", "top_category", "risk", "model_version", "policy"]


class PostEventInline(ReadOnlyInline):
    model = PostEvent
    fields = ["created_at", "from_state", "to_state", "actor", "detail"]


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["id", "state", "client", "external_id", "attempts", "created_at"]
    list_filter = ["state"]
    search_fields = ["=id", "=external_id"]
    readonly_fields = [f.name for f in Post._meta.fields]
    inlines = [AnalysisInline, PostEventInline]
    show_full_result_count = False
    list_select_related = ["client"]


class CategoryInline(admin.StackedInline):
    model = Category
    extra = 0


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["version", "note", "created_at", "created_by"]
    inlines = [CategoryInline]


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

    list_display = ["id", "post", "post_state", "state", "attempts", "last_status_code", "next_attempt_at",
                    "delivered_at"]
    list_filter = ["state"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
