"""Classifier versions: metrics side by side with the baseline, promote and roll back (leads only)."""
from __future__ import annotations

from typing import Any

from functools import partial

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_http_methods

from moderation.admin.access import can_lead, permission_require
from moderation.admin.display import compact_time
from moderation.models import ModelVersion
from moderation.selectors.learning import VersionComparison, model_version_active, model_version_comparison
from moderation.errors import ServiceError
from moderation.services.learning import model_promote, model_rollback

MODEL_PERM = "moderation.change_modelversion"


def _macro(metrics: dict[str, Any], *path: str) -> str:
    value: Any = metrics.get("macro", {})
    for key in path:
        value = (value or {}).get(key)
    return "—" if value is None else f"{value:.3f}"


def _confirm(request: HttpRequest, site: admin.AdminSite, *, version: ModelVersion, action: str,
             comparison: VersionComparison, title: str) -> HttpResponse:
    context = {**site.each_context(request), "opts": ModelVersion._meta, "title": title, "version": version,
               "action": action, "comparison": comparison}
    return TemplateResponse(request, "moderation/admin/model_version_confirm.html", context)


def _back_to(version: ModelVersion) -> HttpResponse:
    return redirect("admin:moderation_modelversion_change", version.pk)


@require_http_methods(["GET", "POST"])
def promote_view(request: HttpRequest, object_id: int, *, site: admin.AdminSite) -> HttpResponse:
    """GET: the candidate's metrics beside the active head's, with a warning where it is worse; POST: promote."""
    permission_require(request.user, MODEL_PERM)
    version = get_object_or_404(ModelVersion, pk=object_id)
    if version.status == ModelVersion.Status.ACTIVE:
        messages.info(request, f"v{version.version} is already active.")
        return _back_to(version)
    if request.method == "POST":
        model_promote(version=version, by=request.user)
        messages.success(request, f"v{version.version} is active; workers use it from their next batch.")
        return _back_to(version)
    comparison = model_version_comparison(new=version, current=model_version_active())
    return _confirm(request, site, version=version, action="promote", comparison=comparison,
                    title=f"Promote v{version.version}?")


@require_http_methods(["GET", "POST"])
def rollback_view(request: HttpRequest, object_id: int, *, site: admin.AdminSite) -> HttpResponse:
    """GET: the version a rollback returns to beside the active one; POST: roll back."""
    permission_require(request.user, MODEL_PERM)
    version = get_object_or_404(ModelVersion, pk=object_id)
    if version.status != ModelVersion.Status.ACTIVE:
        messages.error(request, f"v{version.version} is not active: only the active version can be rolled back.")
        return _back_to(version)
    if request.method == "POST":
        try:
            restored = model_rollback(by=request.user)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return _back_to(version)
        target = f"v{restored.version}" if restored else "zero-shot scoring"
        messages.success(request, f"Rolled back: {target} is used from the next batch.")
        return _back_to(version)
    comparison = model_version_comparison(new=version.replaced, current=version)
    return _confirm(request, site, version=version, action="rollback", comparison=comparison,
                    title=f"Roll back v{version.version}?")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["moderation/review.css"]}  # short ids that never wrap

    list_display = ["version_status", "auroc", "baseline_auroc", "f1_review", "ece", "dataset_size", "created",
                    "promoted"]
    list_display_links = ["version_status"]
    list_filter = ["status"]
    actions = None
    # Nothing here is edited in place: a version changes only by being promoted or rolled back,
    # through the buttons on its page (change_view below), each behind a confirmation.
    readonly_fields = ["version", "status", "promoted_by", "promoted_at", "retired_by", "retired_at", "replaced",
                       "metrics_table", "digest", "categories", "dataset_digest", "dataset_sizes",
                       "training_config", "parent", "created_by", "created_at", "artifact_name"]
    exclude = ["metrics", "baseline_metrics", "artifact"]
    change_form_template = "moderation/admin/model_version_change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training runs only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # kept for traceability; analyses refer to them

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                 "show_save_and_add_another": False, "show_delete": False, "can_switch": can_lead(request.user)
                 and request.user.has_perm(MODEL_PERM)}
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[URLPattern]:
        def wrap(view: Any) -> Any:
            return self.admin_site.admin_view(partial(view, site=self.admin_site))

        return [path("<int:object_id>/promote/", wrap(promote_view), name="moderation_modelversion_promote"),
                path("<int:object_id>/rollback/", wrap(rollback_view), name="moderation_modelversion_rollback"),
                *super().get_urls()]

    @admin.display(description="version", ordering="version")
    def version_status(self, version: ModelVersion) -> str:
        return f"v{version.version} {version.status}"

    @admin.display(description="created", ordering="created_at")
    def created(self, version: ModelVersion) -> str:
        return compact_time(version.created_at)

    @admin.display(description="promoted", ordering="promoted_at")
    def promoted(self, version: ModelVersion) -> str:
        by = f" by {version.promoted_by}" if version.promoted_by else ""
        return compact_time(version.promoted_at, suffix=by)

    @admin.display(description="artifact")
    def artifact_name(self, version: ModelVersion) -> str:
        return version.artifact.name  # a name, not a link: artifacts are not served over HTTP

    @admin.display(description="AUROC")
    def auroc(self, version: ModelVersion) -> str:
        return _macro(version.metrics, "auroc")

    @admin.display(description="baseline")
    def baseline_auroc(self, version: ModelVersion) -> str:
        return f"{_macro(version.baseline_metrics, 'auroc')} ({version.baseline_metrics.get('source', '—')})"

    @admin.display(description="F1")
    def f1_review(self, version: ModelVersion) -> str:
        return _macro(version.metrics, "review", "f1")

    @admin.display(description="ECE")
    def ece(self, version: ModelVersion) -> str:
        return _macro(version.metrics, "ece")

    @admin.display(description="labels")
    def dataset_size(self, version: ModelVersion) -> int:
        return sum(version.dataset_sizes.values())

    @admin.display(description="held-out metrics: this version | baseline on the same split")
    def metrics_table(self, version: ModelVersion) -> str:
        rows = [("macro", version.metrics.get("macro", {}), version.baseline_metrics.get("macro", {}))]
        rows += [(slug, m, version.baseline_metrics.get("categories", {}).get(slug, {}))
                 for slug, m in version.metrics.get("categories", {}).items()]
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                                ((name, _fmt(m.get("auroc")), _fmt(b.get("auroc")),
                                  _fmt((m.get("review") or {}).get("f1")), _fmt((b.get("review") or {}).get("f1")))
                                 for name, m, b in rows))
        return format_html("<table><tr><th>category</th><th>AUROC</th><th>baseline AUROC</th><th>F1 @ review</th>"
                           "<th>baseline F1</th></tr>{}</table>", body)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"
