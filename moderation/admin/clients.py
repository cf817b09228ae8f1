"""Admin of the API side: API keys, webhook endpoints, the delivery log and the statements sent to the DSA
Transparency Database."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from moderation.admin.display import short_id_html
from moderation.models import ApiKey, StatementExport, WebhookDelivery, WebhookEndpoint
from moderation.errors import ServiceError
from moderation.services.webhooks import webhook_secret_new, webhook_url_check


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "hashed_key", "created_at"]


class WebhookEndpointForm(forms.ModelForm):
    """The URL passes the same public-address check as the API's."""

    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        exclude = ["secret"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            webhook_url_check(url=url)
        except ServiceError as exc:
            raise forms.ValidationError(exc.message)
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """A new endpoint gets a generated signing secret, shown once in the confirmation message."""

    list_display = ["client", "url", "is_active", "created_at"]
    form = WebhookEndpointForm

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        new_secret = None if obj.secret else webhook_secret_new()
        if new_secret:
            obj.secret = new_secret
        super().save_model(request, obj, form, change)
        if new_secret:
            messages.warning(request, f"Signing secret of {obj.url} (shown only now; give it to the "
                                      f"receiver): {new_secret}")


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


@admin.register(StatementExport)
class StatementExportAdmin(admin.ModelAdmin):
    """The statements of reasons exported, and whether the database accepted them: read-only, never deleted
    (a PUID is never reused); a refused or failed one shows the database's answer."""

    class Media:
        css = {"all": ["moderation/review.css"]}

    list_display = ["puid", "restricted_at", "state", "attempts", "last_status_code", "last_error", "submitted_at"]
    list_filter = ["state"]
    search_fields = ["puid"]
    readonly_fields = [f.name for f in StatementExport._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by the export and the submitter only

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
