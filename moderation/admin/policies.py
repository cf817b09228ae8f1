"""Policy admin: published versions are read-only; a lead edits by publishing a new version from one."""
from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from moderation.admin.access import LEAD_PERM, can_lead, permission_require
from moderation.models import Category, Policy
from moderation.services.policies import CATEGORY_FIELDS, MAPPING_FIELDS, category_mapping_errors, policy_publish
from moderation.services.statements import STATEMENT_CATEGORIES

LIST_FIELDS = ("prompts", "phrases", "questions")


class LinesField(forms.CharField):
    """A list of strings edited as one per line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, (list, tuple)) else value

    def to_python(self, value: Any) -> list[str]:
        return [line.strip() for line in (super().to_python(value) or "").splitlines() if line.strip()]


class CategoryForm(forms.Form):
    slug = forms.SlugField(max_length=64)
    name = forms.CharField(max_length=128)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))
    severity = forms.FloatField(min_value=0.0)
    prompts = LinesField(required=False)
    phrases = LinesField(required=False)
    questions = LinesField(required=False)
    exemplars = LinesField(required=False, help_text="Short example texts of this category, one per line.")
    review_threshold = forms.FloatField(min_value=0.0, max_value=1.0)
    remove_threshold = forms.FloatField(min_value=0.0, max_value=1.0)
    # The statement of reasons' mapping; left empty, a category keeps the previous version's.
    dsa_category = forms.ChoiceField(
        required=False, label="Transparency Database category",
        choices=[("", "(keep the previous version's)"), *((c, c) for c in STATEMENT_CATEGORIES)])
    dsa_ground = forms.ChoiceField(required=False, label="Decision ground", choices=[
        ("", "(keep the previous version's)"), *Category._meta.get_field("dsa_ground").choices])
    legal_ground = forms.CharField(required=False, max_length=500,
                                   help_text="The legal provision relied on; required with the illegal-content ground.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("review_threshold", 0) > data.get("remove_threshold", 1):
            raise ValidationError("The review threshold must not exceed the remove threshold.")
        if data.get("legal_ground") and not data.get("dsa_ground"):
            self.add_error("dsa_ground", "Choose the ground the legal provision goes with.")
        for error in category_mapping_errors(category_mapping_stated(data)):
            self.add_error(None, error)
        return data


def category_mapping_stated(data: dict[str, Any]) -> dict[str, Any]:
    """The category's cleaned fields less the mapping it leaves to the previous version (empty choices)."""
    stated = {k: v for k, v in data.items() if k not in MAPPING_FIELDS}
    if data.get("dsa_category"):
        stated["dsa_category"] = data["dsa_category"]
    if data.get("dsa_ground"):
        stated["dsa_ground"], stated["legal_ground"] = data["dsa_ground"], (data.get("legal_ground") or "").strip()
    return stated


class BaseCategoryFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        slugs = [f.cleaned_data["slug"] for f in self.forms
                 if f.cleaned_data and not f.cleaned_data.get("DELETE") and "slug" in f.cleaned_data]
        if len(slugs) != len(set(slugs)):
            raise ValidationError("Category slugs must be unique.")
        if not slugs:
            raise ValidationError("A policy needs at least one category.")


CategoryFormSet = forms.formset_factory(CategoryForm, formset=BaseCategoryFormSet, extra=1, can_delete=True)


class PolicyVersionForm(forms.Form):
    note = forms.CharField(max_length=255, required=False, help_text="What changed, for the version list.")
    benign_prompts = LinesField(required=False)
    benign_exemplars = LinesField(required=False, help_text="Short texts that break no rule, one per line.")


class CategoryInline(admin.StackedInline):
    model = Category
    extra = 0
    can_delete = False
    fields = ["slug", "name", "description", "severity", "prompts", "phrases", "questions", "exemplars",
              "review_threshold", "remove_threshold", "position", "dsa_category", "dsa_ground", "legal_ground"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


def _categories_initial(policy: Policy) -> list[dict[str, Any]]:
    return [{f: getattr(c, f) for f in CATEGORY_FIELDS} for c in policy.categories.order_by("position", "slug")]


def new_version_view(request: HttpRequest, object_id: int, *, site: admin.AdminSite) -> HttpResponse:
    """Publish a new version, prefilled from ``object_id``; the source version is never touched."""
    permission_require(request.user, LEAD_PERM)
    source = get_object_or_404(Policy, pk=object_id)
    data = request.POST if request.method == "POST" else None
    form = PolicyVersionForm(data, initial={"benign_prompts": source.benign_prompts,
                                            "benign_exemplars": source.benign_exemplars,
                                            "note": f"from v{source.version}"})
    formset = CategoryFormSet(data, initial=_categories_initial(source), prefix="categories")
    if data is not None and form.is_valid() and formset.is_valid():
        categories = [category_mapping_stated(f.cleaned_data) for f in formset.forms
                      if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        try:
            policy = policy_publish(categories=categories, benign_prompts=form.cleaned_data["benign_prompts"],
                                    benign_exemplars=form.cleaned_data["benign_exemplars"],
                                    note=form.cleaned_data["note"], created_by=request.user)
        except ValueError as exc:  # a mapping kept from the previous version that the database refuses
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Published policy v{policy.version}; new analyses use it.")
            return redirect("admin:moderation_policy_change", policy.pk)
    context = {**site.each_context(request), "opts": Policy._meta, "title": f"New version from v{source.version}",
               "source": source, "form": form, "formset": formset}
    return TemplateResponse(request, "moderation/admin/policy_new_version.html", context)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["version", "note", "created_at", "created_by"]
    readonly_fields = ["version", "note", "benign_prompts", "benign_exemplars", "created_at", "created_by"]
    inlines = [CategoryInline]
    change_form_template = "moderation/admin/policy_change_form.html"

    # Published versions are immutable: nobody changes or deletes one; leads publish new versions.
    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        permission_require(request.user, LEAD_PERM)
        latest = Policy.objects.order_by("-version").first()
        if latest is None:
            return super().add_view(request, form_url, extra_context)
        return redirect("admin:moderation_policy_new_version", latest.pk)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_publish": can_lead(request.user)}
        if str(object_id).isdigit():
            extra["new_version_url"] = reverse("admin:moderation_policy_new_version", args=[object_id])
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(partial(new_version_view, site=self.admin_site))
        return [path("<int:object_id>/new-version/", view, name="moderation_policy_new_version"),
                *super().get_urls()]
