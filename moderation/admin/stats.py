"""The leads' stats page: charts of volume, decisions, the queue, agreement and throughput."""
from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from moderation.admin.access import LEAD_PERM, permission_require
from moderation.admin.charts import Chart, chart_columns, chart_rows
from moderation.models import Post
from moderation.selectors.appeals import stats_appeals
from moderation.selectors.reviews import review_queue_summary
from moderation.selectors.statement_exports import statement_exports_backlog
from moderation.selectors.workers import webhook_oldest_pending_age_s, workers_seen
from moderation.selectors.stats import (stats_agreement, stats_decision_mix, stats_queue_ages, stats_throughput,
                                        stats_volume_per_day)

WINDOW_DAYS = 14


def stats_charts(*, days: int = WINDOW_DAYS) -> list[Chart]:
    since = timezone.now() - timedelta(days=days)
    agreement = stats_agreement(since=since)
    return [
        chart_columns(title=f"Posts per day (last {days} days)",
                      rows=[(d.strftime("%d"), n) for d, n in stats_volume_per_day(days=days)]),
        chart_rows(title=f"Review decisions (last {days} days)", rows=stats_decision_mix(since=since)),
        chart_rows(title="Waiting for review, by age", rows=stats_queue_ages()),
        chart_rows(title="Model–reviewer agreement per category (reviews confirming the model's top category)",
                   rows=[(a.category, a.rate) for a in agreement], max_value=1.0,
                   texts=[f"{a.rate:.0%} of {a.total}" for a in agreement]),
        chart_rows(title="Reviewer throughput (decisions, last 7 days)",
                   rows=stats_throughput(since=timezone.now() - timedelta(days=7))),
    ]


@require_GET
def stats_view(request: HttpRequest, *, site: admin.AdminSite) -> HttpResponse:
    permission_require(request.user, LEAD_PERM)
    context = {**site.each_context(request), "opts": Post._meta, "title": "Moderation stats",
               "charts": stats_charts(), "summary": review_queue_summary(), "now": timezone.now(),
               "workers": workers_seen(), "webhook_oldest_pending_s": webhook_oldest_pending_age_s(),
               "statements": statement_exports_backlog(),
               "appeals": stats_appeals(since=timezone.now() - timedelta(days=WINDOW_DAYS)), "window_days": WINDOW_DAYS}
    return TemplateResponse(request, "moderation/admin/stats.html", context)
