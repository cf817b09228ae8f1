"""``manage.py moderation_purge_content``: apply the retention setting now."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from moderation.services.retention import post_content_purge


class Command(BaseCommand):
    help = "Delete images and text of posts older than RETENTION_DAYS (or --days), keeping verdicts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Override MODERATION['RETENTION_DAYS'].")
        parser.add_argument("--mode", choices=["delete", "anonymize"], default=None)

    def handle(self, *args: Any, days: int | None, mode: str | None, **options: Any) -> None:
        purged = post_content_purge(days=days, mode=mode)
        self.stdout.write(f"Purged the content of {purged} posts.")
