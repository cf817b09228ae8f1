"""Admin of hash banks: leads manage site banks and their hashes, import and export hash lists."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from moderation.models import Bank, BankEntry
from moderation.services.banks import bank_export, bank_hash_parse, bank_import
from moderation.errors import ServiceError

SHOWN_LINE_ERRORS = 50


class BankEntryForm(forms.ModelForm):
    """The hash passes the same check as the API's (64 hex digits, stored lowercase)."""

    class Meta:
        model = BankEntry
        fields = ["bank", "pdq_hash", "source", "note", "enabled"]

    def clean_pdq_hash(self) -> str:
        try:
            return bank_hash_parse(self.cleaned_data["pdq_hash"])
        except ServiceError as exc:
            raise forms.ValidationError(exc.message)


class ImportForm(forms.Form):
    file = forms.FileField(required=False, help_text="A ThreatExchange signal file (`pdq <hash>` per line) "
                                                     "or a `threatexchange dataset --csv` file.")
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
                           help_text="…or paste the list here.")

    def content(self) -> str:
        upload = self.cleaned_data.get("file")
        if upload is not None:
            return upload.read().decode("utf-8", errors="replace")
        return self.cleaned_data.get("text") or ""


def _export(request: HttpRequest, queryset: QuerySet[Bank], fmt: str) -> HttpResponse | None:
    banks = list(queryset[:2])
    if len(banks) != 1:
        messages.error(request, "Select exactly one bank to export.")
        return None
    bank = banks[0]
    response = HttpResponse(bank_export(bank=bank, fmt=fmt),
                            content_type="text/csv" if fmt == "csv" else "text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="bank-{bank.pk}.{"csv" if fmt == "csv" else "txt"}"'
    return response


@admin.action(permissions=["view"], description="Export as a ThreatExchange signal file (pdq <hash> lines)")
def export_signal_file(modeladmin, request, queryset):  # type: ignore[no-untyped-def]
    return _export(request, queryset, "te")


@admin.action(permissions=["view"], description="Export as a ThreatExchange dataset CSV")
def export_dataset_csv(modeladmin, request, queryset):  # type: ignore[no-untyped-def]
    return _export(request, queryset, "csv")


@admin.register(Bank)
class BankAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "action", "threshold", "enabled", "purpose", "entry_count", "import_link"]
    # No inline of entries: a bank may hold millions; they are browsed and added in the entry list.
    list_filter = ["action", "enabled", "purpose"]
    search_fields = ["name"]
    list_select_related = ["client"]
    # The reviewed banks are made by the review service, one of each per client.
    readonly_fields = ["purpose", "created_at"]
    actions = [export_signal_file, export_dataset_csv]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Bank]:
        return super().get_queryset(request).annotate(entry_total=Count("entries"))

    @admin.display(description="owner", ordering="client")
    def owner(self, bank: Bank) -> str:
        return "site" if bank.client_id is None else str(bank.client)

    @admin.display(description="entries", ordering="entry_total")
    def entry_count(self, bank: Bank) -> str:
        url = f"{reverse('admin:moderation_bankentry_changelist')}?bank__id__exact={bank.pk}"
        return format_html('<a href="{}">{}</a>', url, int(getattr(bank, "entry_total", 0)))

    @admin.display(description="import")
    def import_link(self, bank: Bank) -> str:
        return format_html('<a href="{}">import a list</a>', reverse("admin:moderation_bank_import", args=[bank.pk]))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("<int:bank_id>/import/", view, name="moderation_bank_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest, bank_id: int) -> HttpResponse:
        """Import a hash list into one bank: all of it in one transaction, or none with each bad line named."""
        bank = get_object_or_404(Bank, pk=bank_id)
        if not self.has_change_permission(request, bank):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        line_errors: list[dict[str, Any]] = []
        if request.method == "POST" and form.is_valid():
            try:
                result = bank_import(bank=bank, text=form.content(), source=f"admin import by {request.user}",
                                     added_by=request.user)
            except ServiceError as exc:
                messages.error(request, exc.message)
                line_errors = list(exc.details or [])
            else:
                messages.success(request, f"Imported {result.added} hash(es) into {bank.name}; "
                                          f"{result.already_present} were there already.")
                return HttpResponseRedirect(reverse("admin:moderation_bank_change", args=[bank.pk]))
        context = {**self.admin_site.each_context(request), "bank": bank, "form": form, "title": f"Import into {bank}",
                   "line_errors": line_errors[:SHOWN_LINE_ERRORS], "more_errors": len(line_errors) - SHOWN_LINE_ERRORS,
                   "opts": self.model._meta}
        return TemplateResponse(request, "moderation/admin/bank_import.html", context)


@admin.register(BankEntry)
class BankEntryAdmin(admin.ModelAdmin):
    form = BankEntryForm
    list_display = ["pdq_hash", "bank", "source", "enabled", "added_at"]
    list_filter = ["enabled", "bank"]
    show_full_result_count = False
    search_fields = ["=pdq_hash"]
    list_select_related = ["bank", "bank__client"]
    readonly_fields = ["added_at", "added_by", "review_decision"]

    def save_model(self, request: HttpRequest, obj: BankEntry, form: Any, change: bool) -> None:
        if not change:
            obj.added_by = request.user
        super().save_model(request, obj, form, change)
