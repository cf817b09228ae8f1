"""``manage.py moderation_search_index``: build the pgvector search index on a database that got the
extension after migration 0023 ran."""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from moderation.services.search_pgvector import (SEARCH_INDEX_PARTITIONS, search_index_install, search_index_ready,
                                                 search_index_rebuild)


class Command(BaseCommand):
    help = "Create the pgvector search index and fill it from the current analyses, where pgvector is available."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--rebuild", action="store_true",
                            help="drop the index and build it again from the current analyses "
                                 f"({SEARCH_INDEX_PARTITIONS} partitions by client)")

    def handle(self, *args: Any, database: str, rebuild: bool, **options: Any) -> None:
        connection = connections[database]
        created = rebuilt = False
        if connection.vendor == "postgresql":  # SQLite's schema editor would refuse to open in a transaction
            with connection.schema_editor() as editor:  # one transaction: the table and its rows, or nothing
                if rebuild:
                    rebuilt = search_index_rebuild(apps=apps, schema_editor=editor,
                                                   partitions=SEARCH_INDEX_PARTITIONS, always=True)
                created = rebuilt or search_index_install(apps=apps, schema_editor=editor)
        if rebuilt:
            self.stdout.write("Rebuilt the search index from the current analyses.")
        elif created:
            self.stdout.write("Created the search index and filled it from the current analyses.")
        elif search_index_ready(using=database):
            self.stdout.write("The search index exists already.")
        else:
            self.stdout.write("pgvector is not available on this database: search stays exact.")
