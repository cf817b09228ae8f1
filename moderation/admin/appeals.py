"""The appeals queue in the admin: open appeals first, each decided through ``appeal_decide``."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from moderation.admin.display import compact_time, short_id_html
from moderation.errors import ServiceError
from moderation.models import Appeal
from moderation.services.appeals import JUDGMENTS, NOTE_LIMIT, appeal_decide, appeal_took_part


class AppealStatusFilter(admin.SimpleListFilter):
    """Open appeals unless another status is chosen: the changelist is the queue."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("decided", "Decided"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        for value, label in self.lookup_choices:
            yield {"selected": (self.value() or "open") == value, "display": label,
                   "query_string": changelist.get_query_string({self.parameter_name: value})}

    def queryset(self, request: HttpRequest, queryset: QuerySet[Appeal]) -> QuerySet[Appeal]:
        status = self.value() or "open"
        if status == "open":
            return queryset.filter(decided_at__isnull=True)
        if status == "decided":
            return queryset.filter(decided_at__isnull=False)
        return queryset


class DecideForm(forms.Form):
    decision = forms.ChoiceField(choices=[(d.value, d.label) for d in JUDGMENTS], widget=forms.RadioSelect)
    note = forms.CharField(required=False, max_length=NOTE_LIMIT, widget=forms.Textarea(attrs={"rows": 4}),
                           help_text="Optional; sent to the client with the decision.")


@admin.register(Appeal)
class AppealAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["moderation/review.css"]}  # short ids that never wrap

    list_display = ["created", "short_post", "restriction_category", "source", "decision", "decided_by_username",
                    "decide_link"]
    list_filter = [AppealStatusFilter, "decision", "restriction_automated"]
    search_fields = ["=post__id"]
    readonly_fields = [f.name for f in Appeal._meta.fields]
    ordering = ["created_at"]
    show_full_result_count = False

    @admin.display(description="created", ordering="created_at")
    def created(self, appeal: Appeal) -> str:
        return compact_time(appeal.created_at)

    @admin.display(description="post", ordering="post_id")
    def short_post(self, appeal: Appeal) -> str:
        return short_id_html(appeal.post_id)

    @admin.display(description="restricted by")
    def source(self, appeal: Appeal) -> str:
        return "engine" if appeal.restriction_automated else "reviewer"

    @admin.display(description="")
    def decide_link(self, appeal: Appeal) -> str:
        if appeal.decided_at is not None:
            return "—"
        return format_html('<a href="{}">decide</a>', reverse("admin:moderation_appeal_decide", args=[appeal.pk]))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.decide_view)
        return [path("<uuid:appeal_id>/decide/", view, name="moderation_appeal_decide"), *super().get_urls()]

    def decide_view(self, request: HttpRequest, appeal_id: Any) -> HttpResponse:
        """Uphold or overturn one appeal; the service's refusal (the reviewer took part) is shown as-is."""
        appeal = get_object_or_404(Appeal.objects.select_related("post"), pk=appeal_id)
        if not self.has_change_permission(request, appeal):
            raise PermissionDenied
        form = DecideForm(request.POST or None)
        status = 200
        if request.method == "POST" and form.is_valid():
            try:
                decided = appeal_decide(appeal=appeal, reviewer=request.user, **form.cleaned_data)
            except ServiceError as exc:
                form.add_error(None, exc.message)
                status = exc.status
            else:
                messages.success(request, f"Appeal {appeal.pk} decided: {decided.decision}.")
                return HttpResponseRedirect(reverse("admin:moderation_appeal_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "appeal": appeal, "form": form,
                   "took_part": appeal_took_part(appeal=appeal, reviewer=request.user),
                   "title": f"Decide the appeal on post {appeal.post_id}"}
        return TemplateResponse(request, "moderation/admin/appeal_decide.html", context, status=status)
