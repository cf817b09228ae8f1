"""Post admin: the changelist (with the policy version that judged each post), bulk review actions,
and the URLs of the reviewer dashboard, hung under the post admin so the default ``admin.site`` serves them."""
from __future__ import annotations

import uuid
from functools import partial
from typing import Any, Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from moderation.admin import review_views, stats, transparency
from moderation.admin.access import REVIEW_PERM, permission_require
from moderation.admin.display import compact_time, short_id, short_id_html
from moderation.admin.pagination import CappedCountPaginator
from moderation.models import Analysis, Post, PostEvent, PostState, ReviewDecision
from moderation.services.reviews import review_decide_many


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


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


class ReviewDecisionInline(ReadOnlyInline):
    model = ReviewDecision
    fk_name = "post"
    fields = ["created_at", "reviewer_username", "verdict", "category", "reason", "undoes"]


def _bulk_decide(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Post], *,
                 verdict: str, label: str) -> HttpResponse | None:
    """First show the confirmation page; on confirm, write one decision per selected post."""
    permission_require(request.user, REVIEW_PERM)
    if request.POST.get("confirm") != "yes":
        context = {**modeladmin.admin_site.each_context(request), "opts": Post._meta, "title": f"{label}?",
                   "posts": list(queryset[:500]), "count": queryset.count(), "label": label,
                   "action": request.POST.get("action"), "waiting": PostState.NEEDS_REVIEW}
        return TemplateResponse(request, "moderation/admin/bulk_confirm.html", context)
    decided, skipped = review_decide_many(posts=queryset, reviewer=request.user, verdict=verdict,
                                          reason=request.POST.get("reason", ""))
    modeladmin.message_user(request, f"{label}: {len(decided)} post(s) decided.", messages.SUCCESS)
    if skipped:
        modeladmin.message_user(request, f"{len(skipped)} post(s) skipped: not waiting for review or held by "
                                         "another reviewer.", messages.WARNING)
    return None


@admin.action(permissions=["change"], description="Mark selected posts not violating")
def mark_not_violating(modeladmin, request, queryset):  # type: ignore[no-untyped-def]
    return _bulk_decide(modeladmin, request, queryset, verdict=ReviewDecision.Verdict.NOT_VIOLATING,
                        label="Mark not violating")


@admin.action(permissions=["change"], description="Escalate selected posts")
def escalate(modeladmin, request, queryset):  # type: ignore[no-untyped-def]
    return _bulk_decide(modeladmin, request, queryset, verdict=ReviewDecision.Verdict.ESCALATE, label="Escalate")


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["moderation/review.css"]}  # short ids that never wrap

    list_display = ["short_id", "state", "top_category", "policy_version", "client", "short_external_id",
                    "created", "review_link"]
    list_display_links = ["short_id"]
    list_filter = ["state"]
    search_fields = ["=id", "=external_id"]
    # Files are shown as links to the permission-checked image view, never as MEDIA_URL links.
    exclude = ["image", "image_thumbnail"]
    readonly_fields = [f.name for f in Post._meta.fields if f.name not in ("image", "image_thumbnail")] + ["image_link"]
    inlines = [AnalysisInline, ReviewDecisionInline, PostEventInline]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    list_select_related = ["client", "current_analysis__policy"]
    actions = [mark_not_violating, escalate]
    change_list_template = "moderation/admin/post_change_list.html"
    change_form_template = "moderation/admin/post_change_form.html"

    @admin.display(description="id", ordering="id")
    def short_id(self, post: Post) -> str:
        return short_id_html(post.pk)

    @admin.display(description="ext. id", ordering="external_id")
    def short_external_id(self, post: Post) -> str:
        if not post.external_id:
            return "—"
        shown = post.external_id if len(post.external_id) <= 24 else f"{post.external_id[:23]}…"
        return format_html('<span title="{}">{}</span>', post.external_id, shown)

    @admin.display(description="created", ordering="created_at")
    def created(self, post: Post) -> str:
        return compact_time(post.created_at)  # so that the list fits a 1024 px window

    @admin.display(description="image")
    def image_link(self, post: Post) -> str:
        if not post.image or post.content_deleted_at:
            return "—"
        return format_html('<a href="{}">{}×{} JPEG</a>', reverse("moderation:post-image", args=[post.pk]),
                           post.image_width, post.image_height)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """A read-only record: titled for reviewing, a link to the review page, no Save buttons
        (reviewers hold the change permission to decide, not to edit fields)."""
        extra = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                 "show_save_and_add_another": False, "show_delete": False,
                 "title": f"Review record of post {short_id(object_id)}", "subtitle": None,
                 "review_url": review_views.post_review_url(object_id) if _is_uuid(object_id) else None}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="top (risk)", ordering="current_analysis__top_category")
    def top_category(self, post: Post) -> str:
        analysis = post.current_analysis
        if analysis is None:
            return "—"
        return format_html("{} <span class=\"mod-muted\">{}</span>", analysis.top_category or "—", f"{analysis.risk:.2f}")

    @admin.display(description="policy")
    def policy_version(self, post: Post) -> str:
        return f"v{post.current_analysis.policy.version}" if post.current_analysis else "—"

    @admin.display(description="review")
    def review_link(self, post: Post) -> str:
        return format_html('<a href="{}">open</a>', review_views.post_review_url(post.pk))

    def get_urls(self) -> list[URLPattern]:
        return self._review_urls() + super().get_urls()

    def _review_urls(self) -> list[URLPattern]:
        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(partial(view, site=self.admin_site))

        v = review_views
        return [
            path("queue/", wrap(v.queue_view), name="moderation_review_queue"),
            path("queue/claim/", wrap(v.claim_next_view), name="moderation_review_claim"),
            path("queue/undo/", wrap(v.undo_view), name="moderation_review_undo"),
            path("stats/", wrap(stats.stats_view), name="moderation_review_stats"),
            path("transparency/", wrap(transparency.transparency_view), name="moderation_transparency_report"),
            path("requests/<uuid:request_id>/", wrap(v.request_poll_view), name="moderation_review_request"),
            path("<uuid:post_id>/review/", wrap(v.post_review_view), name="moderation_review_post"),
            path("<uuid:post_id>/review/decide/", wrap(v.decide_view), name="moderation_review_decide"),
            path("<uuid:post_id>/review/cluster/", wrap(v.cluster_decide_view), name="moderation_review_cluster"),
            path("<uuid:post_id>/review/ask/", wrap(v.ask_view), name="moderation_review_ask"),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        links = {"queue_url": reverse("admin:moderation_review_queue"),
                 "stats_url": reverse("admin:moderation_review_stats")}
        return super().changelist_view(request, {**(extra_context or {}), **links})
