"""The pgvector search table, hash-partitioned by client (see ``moderation.services.search_pgvector``).

A database that got the table from an earlier 0023 has it rebuilt: dropped and filled again from
the current analyses, which hold every embedding it holds. Databases without the table (SQLite,
PostgreSQL without pgvector) and databases whose 0023 already made it partitioned are left alone.
Reversing builds the plain table 0023 used to make.
"""
from django.db import migrations

from moderation.services.search_pgvector import SEARCH_INDEX_PARTITIONS, search_index_rebuild


def partition(apps, schema_editor):
    search_index_rebuild(apps=apps, schema_editor=schema_editor, partitions=SEARCH_INDEX_PARTITIONS)


def unpartition(apps, schema_editor):
    search_index_rebuild(apps=apps, schema_editor=schema_editor, partitions=0)


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0023_search_embeddings'),
    ]

    operations = [
        migrations.RunPython(partition, unpartition),
    ]
