"""Classifier versions: metrics side by side with the baseline, promote and roll back (leads only)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from moderation.admin.access import permission_require
from moderation.models import ModelVersion
from moderation.services.errors import ServiceError
from moderation.services.learning import model_promote, model_rollback

MODEL_PERM = "moderation.change_modelversion"


def _macro(metrics: dict[str, Any], *path: str) -> str:
    value: Any = metrics.get("macro", {})
    for key in path:
        value = (value or {}).get(key)
    return "—" if value is None else f"{value:.3f}"


@admin.action(permissions=["change"], description="Promote the selected version (make it active)")
def promote(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
    permission_require(request.user, MODEL_PERM)
    if queryset.count() != 1:
        modeladmin.message_user(request, "Select exactly one version to promote.", messages.ERROR)
        return
    version = model_promote(version=queryset.get(), by=request.user)
    modeladmin.message_user(request, f"v{version.version} is active; workers use it from their next batch.")


@admin.action(permissions=["change"], description="Roll back the active version")
def rollback(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
    permission_require(request.user, MODEL_PERM)
    try:
        restored = model_rollback(by=request.user)
    except ServiceError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return
    target = f"v{restored.version}" if restored else "zero-shot scoring"
    modeladmin.message_user(request, f"Rolled back: {target} is used from the next batch.")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "status", "auroc", "baseline_auroc", "f1_review", "ece", "dataset_size",
                    "created_at", "promoted_at"]
    list_filter = ["status"]
    actions = [promote, rollback]
    readonly_fields = ["version", "status", "digest", "categories", "metrics_table", "dataset_digest",
                       "dataset_sizes", "training_config", "parent", "created_by", "created_at", "promoted_at",
                       "retired_at", "artifact"]
    exclude = ["metrics", "baseline_metrics"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training runs only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # kept for traceability; analyses refer to them

    @admin.display(description="AUROC")
    def auroc(self, version: ModelVersion) -> str:
        return _macro(version.metrics, "auroc")

    @admin.display(description="baseline AUROC")
    def baseline_auroc(self, version: ModelVersion) -> str:
        return f"{_macro(version.baseline_metrics, 'auroc')} ({version.baseline_metrics.get('source', '—')})"

    @admin.display(description="F1 @ review")
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
