"""The review ledger in the admin: read-only, because decisions are append-only."""
from __future__ import annotations

from django.contrib import admin

from moderation.admin.display import compact_time, short_id_html
from moderation.models import ReviewDecision


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["moderation/review.css"]}  # short ids that never wrap

    list_display = ["created", "reviewer_username", "verdict", "category", "short_post", "undoes"]
    list_filter = ["verdict"]
    search_fields = ["=reviewer_username", "=post__id"]
    readonly_fields = [f.name for f in ReviewDecision._meta.fields]
    show_full_result_count = False
    list_select_related = ["undoes"]

    @admin.display(description="created", ordering="created_at")
    def created(self, decision: ReviewDecision) -> str:
        return compact_time(decision.created_at)

    @admin.display(description="post", ordering="post_id")
    def short_post(self, decision: ReviewDecision) -> str:
        return short_id_html(decision.post_id)

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
