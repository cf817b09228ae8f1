"""``manage.py moderation_transparency_report --from --to --format csv|json``: the period's transparency figures."""
from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from moderation.selectors.transparency import (ReportRequestInvalid, report_client_get, report_period_parse,
                                               transparency_report, transparency_report_csv)


class Command(BaseCommand):
    help = ("Print the transparency report (DSA Art. 15) of the days FROM..TO (UTC, both included): notices by "
            "category and reporter type, actions by category and ground, automated and human decisions, the "
            "median time from notice to action, appeals and their outcomes.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
        parser.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
        parser.add_argument("--format", dest="report_format", choices=["csv", "json"], default="json")
        parser.add_argument("--client", default="", help="one client's username (default: all clients)")

    def handle(self, *args: Any, first: str, last: str, report_format: str, client: str, **options: Any) -> None:
        try:
            days = report_period_parse(first=first, last=last)
            report = transparency_report(first=days[0], last=days[1], client=report_client_get(username=client))
        except ReportRequestInvalid as exc:
            raise CommandError(str(exc)) from None
        if report_format == "csv":
            self.stdout.write(transparency_report_csv(report), ending="")
        else:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
