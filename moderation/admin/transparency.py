"""The leads' transparency report page: a period's figures (DSA Art. 15), on screen or as CSV/JSON."""
from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from moderation.admin.access import LEAD_PERM, permission_require
from moderation.models import Post
from moderation.selectors.transparency import (ReportRequestInvalid, report_client_get, report_period_parse,
                                               transparency_report, transparency_report_csv)

DEFAULT_DAYS = 30
DOWNLOADS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


@require_GET
def transparency_view(request: HttpRequest, *, site: admin.AdminSite) -> HttpResponse:
    """``?from=&to=`` (days, UTC, both included; default the last 30 days), ``client=`` (a username;
    default all), ``format=csv|json`` to download the same figures."""
    permission_require(request.user, LEAD_PERM)
    today = timezone.now().date()
    params = {"from": request.GET.get("from") or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(),
              "to": request.GET.get("to") or today.isoformat(), "client": request.GET.get("client", "").strip()}
    context = {**site.each_context(request), "opts": Post._meta, "title": "Transparency report", "params": params}
    try:
        first, last = report_period_parse(first=params["from"], last=params["to"])
        report = transparency_report(first=first, last=last, client=report_client_get(username=params["client"]))
    except ReportRequestInvalid as exc:
        return TemplateResponse(request, "moderation/admin/transparency.html", {**context, "error": str(exc)},
                                status=400)
    fmt = request.GET.get("format", "")
    if fmt in DOWNLOADS:
        body = transparency_report_csv(report) if fmt == "csv" else json.dumps(report.as_dict(), indent=2)
        response = HttpResponse(body, content_type=DOWNLOADS[fmt])
        response["Content-Disposition"] = f'attachment; filename="transparency-{first}-{last}.{fmt}"'
        return response
    return TemplateResponse(request, "moderation/admin/transparency.html", {**context, "report": report})
