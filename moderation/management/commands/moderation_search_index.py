"""``manage.py moderation_search_index``: build the pgvector search index on a database that got the
extension after migration 0023 ran."""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from moderation.services.search_pgvector import search_index_install, search_index_ready


class Command(BaseCommand):
    help = "Create the pgvector search index and fill it from the current analyses, where pgvector is available."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        connection = connections[database]
        created = False
        if connection.vendor == "postgresql":  # SQLite's schema editor would refuse to open in a transaction
            with connection.schema_editor() as editor:  # one transaction: the table and its rows, or nothing
                created = search_index_install(apps=apps, schema_editor=editor)
        if created:
            self.stdout.write("Created the search index and filled it from the current analyses.")
        elif search_index_ready(using=database):
            self.stdout.write("The search index exists already.")
        else:
            self.stdout.write("pgvector is not available on this database: search stays exact.")
