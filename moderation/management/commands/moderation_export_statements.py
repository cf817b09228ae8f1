"""``manage.py moderation_export_statements --since …``: statements of reasons in the DSA Transparency
Database's batch shape, written out and/or submitted."""
from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from moderation.selectors.statement_exports import statement_exports_between
from moderation.services.statement_exports import BATCH_LIMIT, statement_batches, statement_exports_record
from moderation.services.transparency_db import statements_resubmit, transparency_db_configured

BATCH_FILE = "statements-{:04d}.json"


class Command(BaseCommand):
    help = (f"Write the statements of reasons of the restricting decisions taken in [--since, --until) as "
            f"bodies of the DSA Transparency Database's POST /api/v1/statements (at most {BATCH_LIMIT} each): "
            f"one JSON line per batch on stdout, or DIR/{BATCH_FILE.format(1)}, …; --submit sends those not "
            f"accepted yet.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="First day (2026-12-01) or moment (2026-12-01T08:00Z).")
        parser.add_argument("--until", default=None, help="Day or moment the period ends before (default: now).")
        parser.add_argument("--output", default=None, help="A directory, or - for stdout (the default "
                                                            "without --submit).")
        parser.add_argument("--submit", action="store_true",
                            help="Post the period's statements not accepted yet to TRANSPARENCY_DB_URL.")

    def handle(self, *args: Any, since: str, until: str | None, output: str | None, submit: bool,
               **options: Any) -> None:
        start, end = _moment(since, "--since"), _moment(until, "--until") if until else None
        if end is not None and end <= start:
            raise CommandError(f"--until ({until}) must be after --since ({since}).")
        if submit and not transparency_db_configured():
            raise CommandError("--submit needs MODERATION['TRANSPARENCY_DB_URL'] and ['TRANSPARENCY_DB_TOKEN'].")
        directory = _directory(output) if output not in (None, "-") else None
        recorded = statement_exports_record(since=start, until=end)
        if output is not None or not submit:
            written, batches = self._write(statement_exports_between(since=start, until=end), directory)
            self.stderr.write(f"Exported {written} statements in {batches} batches ({recorded} newly recorded).")
        if submit:
            counts = statements_resubmit(since=start, until=end)
            self.stderr.write("Submitted: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) + ".")

    def _write(self, exports: Any, directory: Path | None) -> tuple[int, int]:
        written = batches = 0
        for batches, body in enumerate(statement_batches(exports.iterator()), start=1):
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            if directory is None:
                self.stdout.write(text)
            else:
                (directory / BATCH_FILE.format(batches)).write_text(text + "\n", encoding="utf-8")
            written += len(body["statements"])
        return written, batches


def _moment(value: str, option: str) -> datetime:
    """A date (midnight, in the current time zone) or a date and time (naive: the current time zone)."""
    try:
        parsed: datetime | date | None = parse_datetime(value) or parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"{option} must be a date (2026-12-01) or a date and time (2026-12-01T08:00:00Z), "
                           f"not {value!r}.")
    moment = parsed if isinstance(parsed, datetime) else datetime.combine(parsed, time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def _directory(output: str) -> Path:
    """The output directory, made if missing; one that holds an earlier export's batches is refused,
    so no file of it is overwritten or mixed with this one's."""
    directory = Path(output)
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"--output {output} is not a directory.")
    if any(directory.glob("statements-*.json")):
        raise CommandError(f"--output {output} already holds statements-*.json files; choose an empty directory.")
    directory.mkdir(parents=True, exist_ok=True)
    return directory
