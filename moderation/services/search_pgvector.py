"""pgvector index of image embeddings: written with each analysis, searched by HNSW (cosine).

``SearchEmbedding`` holds the image embedding of every searchable post's current analysis in
a ``vector`` column. Its table exists only where migration 0023 found pgvector; elsewhere
``search_index_ready`` is false, nothing here touches the database and search stays exact.

Embedding sizes: CLIP models differ (512 for ViT-B, 768 for ViT-L, 1024 for ViT-H), and an
HNSW index needs one fixed size. The column is a ``vector`` without a size, each row records
its ``dimensions``, and each common size has its own partial expression index,
``(embedding::vector(d)) vector_cosine_ops WHERE dimensions = d`` (pgvector's documented way
to index several sizes in one column). One table rather than one per size: a post has one
row whatever its CLIP, so re-analysis with another model, deletion (``ON DELETE CASCADE``
from the post) and purging touch one row, in the writer's transaction, and a new size needs
only an index, not a table. Sizes without an index are still stored and searched, by a scan.

Partitions: the table is hash-partitioned on the client (``SEARCH_INDEX_PARTITIONS`` partitions,
each with its own HNSW graphs). Every search is within one client, and a filter that keeps 1 row
in 100 is what an HNSW scan does worst: it walks the graph through the other clients' rows, and
pgvector's iterative scan keeps going until it has found enough of this client's, or gives up.
With the partition pruned at plan time, the scan walks a graph where this client's rows are a
large share (all of them for a client alone in its partition), so it stops early and its
candidates are the client's true neighbours. pgvector's own advice for filtering on many
values is partitioning.

Rows are written by ``analysis_record_batch``/``analysis_record_known`` (``search_index_record``),
removed with the post by the database and by retention (``search_index_remove``), never
copied at query time.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from django.apps.registry import Apps
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models.functions import Cast
from pgvector.django import CosineDistance, VectorField

from moderation.conf import EF_SEARCH_MAX, moderation_settings
from moderation.models import Analysis, SearchEmbedding
from moderation.selectors.posts import clip_version

# The ``vector`` type holds at most 16,000 dimensions; larger embeddings stay on the exact path.
VECTOR_MAX_DIMENSIONS = 16_000
# Rows per INSERT when the index is filled from existing analyses.
COPY_BATCH = 2000
# Hash partitions of the table by client; fixed when the table is created (a change means a rebuild:
# ``manage.py moderation_search_index --rebuild``). 0 creates a plain table. More partitions than a site
# has large clients, so that most share theirs with few others: at 100,000 rows and 100 clients, 128
# partitions answered in 0.7 of the time 32 did (one HNSW round instead of two for crowded partitions).
# A small client's rows are ranked exactly through the client index wherever the planner finds it cheaper.
SEARCH_INDEX_PARTITIONS = 128


def pgvector_version(*, using: str) -> tuple[int, ...] | None:
    """The pgvector version of database ``using`` when it holds the search index, else None.

    One catalogue query, not cached: the answer changes when migration 0023 runs or is reversed.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector' AND to_regclass(%s) IS NOT NULL",
                       (SearchEmbedding._meta.db_table,))
        row = cursor.fetchone()
    return None if row is None else tuple(int(part) for part in row[0].split(".") if part.isdigit())


def search_index_ready(*, using: str) -> bool:
    """Whether ``using`` has the pgvector search index (PostgreSQL, pgvector, migration 0023 applied)."""
    return pgvector_version(using=using) is not None


def pgvector_supports(*, dimensions: int, using: str) -> bool:
    """Whether ``using`` can answer a search over embeddings of ``dimensions`` with pgvector."""
    return 0 < dimensions <= VECTOR_MAX_DIMENSIONS and search_index_ready(using=using)


def search_index_record(*, analyses: Sequence[Analysis], client_ids: Sequence[Any], using: str) -> None:
    """Point the index at each post's new current analysis, in the caller's transaction.

    ``client_ids[i]`` owns ``analyses[i]``. A post whose new analysis has no image embedding
    (a text-only post, a hash-bank verdict) leaves the index.
    """
    if not analyses or not search_index_ready(using=using):
        return
    rows = [row for analysis, client_id in zip(analyses, client_ids)
            if (row := _row(analysis, client_id=client_id)) is not None]
    kept = {row.post_id for row in rows}
    search_index_remove(post_ids=[a.post_id for a in analyses if a.post_id not in kept], using=using)
    SearchEmbedding.objects.using(using).bulk_create(
        rows, update_conflicts=True, unique_fields=["post", "client"],  # the partitioned table's key
        update_fields=["analysis", "clip_version", "dimensions", "embedding"])


def _indexable(embedding: bytes | memoryview | None) -> np.ndarray | None:
    # Finite values only: pgvector refuses NaN (analyses stored before embeddings were checked may hold one).
    vector = None if embedding is None else np.frombuffer(bytes(embedding), dtype="<f4")
    if vector is None or not 0 < len(vector) <= VECTOR_MAX_DIMENSIONS or not np.isfinite(vector).all():
        return None
    return vector


def _row(analysis: Analysis, *, client_id: Any) -> SearchEmbedding | None:
    vector = _indexable(analysis.image_embedding)
    if vector is None:
        return None
    return SearchEmbedding(post_id=analysis.post_id, analysis_id=analysis.pk, client_id=client_id,
                           clip_version=clip_version(analysis.model_version), dimensions=len(vector),
                           embedding=vector)


def search_index_remove(*, post_ids: Iterable[Any], using: str) -> int:
    """Take posts out of the index (their content was purged); returns the rows deleted."""
    post_ids = list(post_ids)
    if not post_ids or not search_index_ready(using=using):
        return 0
    return SearchEmbedding.objects.using(using).filter(post_id__in=post_ids).delete()[0]


def search_index_candidates(*, client_id: Any, clip: str, vector: np.ndarray, limit: int,
                            using: str, pgvector: tuple[int, ...] | None = None) -> list[tuple[Any, bytes]]:
    """Up to ``limit`` (post id, embedding bytes) of the client's nearest posts by HNSW.

    Approximate: HNSW may miss a neighbour, so callers ask for more than they need and rescore.
    The client filter runs inside the index scan: ``hnsw.iterative_scan`` (pgvector 0.8) keeps
    scanning until ``limit`` rows of this client are found (or ``hnsw.max_scan_tuples``), and
    ``hnsw.ef_search`` is ``SEARCH_EF_SEARCH``, raised to twice the limit where that is more. Order is
    relaxed: the caller rescores.
    ``pgvector``: the extension's version where the caller has just read it (one query fewer).
    """
    dimensions = len(vector)
    nearest = CosineDistance(Cast("embedding", VectorField(dimensions=dimensions)), np.asarray(vector, dtype="<f4"))
    rows = (SearchEmbedding.objects.using(using)
            .filter(client_id=client_id, clip_version=clip, dimensions=dimensions)
            # The analysis' bytes, not the vector column: a bytea arrives hex-encoded, a vector as decimal text.
            .order_by(nearest).values_list("post_id", "analysis__image_embedding")[:limit])
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        iterative = (pgvector or pgvector_version(using=using) or ()) >= (0, 8)
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)"
                       + (", set_config('hnsw.iterative_scan', 'relaxed_order', true)" if iterative else ""),
                       (str(min(EF_SEARCH_MAX, max(moderation_settings.SEARCH_EF_SEARCH, 2 * limit))),))
        return [(post_id, bytes(embedding)) for post_id, embedding in rows]


def search_index_install(*, apps: Apps, schema_editor: BaseDatabaseSchemaEditor,
                         partitions: int = SEARCH_INDEX_PARTITIONS) -> bool:
    """Create the index where pgvector is (creating the extension if this role may) and fill it from
    the current analyses; returns whether it was created. Nothing happens on other databases or
    where the table already exists.

    The database side of migrations 0023 and 0024 (``apps`` their historical models) and of
    ``manage.py moderation_search_index``, for a database that got the extension after migrating.
    ``partitions``: hash partitions by client (see the module's docstring); 0 for a plain table.
    """
    connection = schema_editor.connection
    model = apps.get_model("moderation", "SearchEmbedding")
    table = model._meta.db_table
    if (connection.vendor != "postgresql" or table in connection.introspection.table_names()
            or not _vector_extension_ensure(connection)):
        return False
    if partitions:
        _partitioned_table_create(model, schema_editor, partitions=partitions)
    else:
        schema_editor.create_model(model)
    # Inline, not TOASTed: a 512-float vector is just over the 2 kB TOAST threshold, and reading each
    # one back out of line doubles the cost of ranking a client's rows. On a partitioned table
    # this reaches every partition.
    schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE MAIN")
    # The database deletes a post's row with the post (or its analysis): Django never has to know this table exists.
    for column, target in (("post_id", "moderation_post"), ("analysis_id", "moderation_analysis")):
        schema_editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fk FOREIGN KEY ({column}) "
                              f"REFERENCES {target} (id) ON DELETE CASCADE")
    _current_embeddings_copy(apps, model, using=connection.alias)
    if partitions:
        # After the rows: an HNSW graph is built faster in one pass than row by row.
        for index in model._meta.indexes:
            search_index_add(model, index, schema_editor, partitions=partitions)
    return True


def search_index_add(model: Any, index: Any, schema_editor: BaseDatabaseSchemaEditor, *, partitions: int) -> None:
    """Create ``index`` on the search table; on a partitioned one, one index per partition named
    ``<index>_p<n>`` and attached to ``index``, so that a plan names the graph it walks (PostgreSQL
    would name them after the column)."""
    if not partitions:
        schema_editor.add_index(model, index)
        return
    table, quote = model._meta.db_table, schema_editor.quote_name
    parent = index.create_sql(model, schema_editor)
    parent.parts["table"] = f"ONLY {quote(table)}"  # the partitioned index alone, invalid until all are attached
    schema_editor.execute(parent)
    for remainder in range(partitions):
        name = f"{index.name}_p{remainder}"
        child = index.create_sql(model, schema_editor)
        child.rename_table_references(table, f"{table}_p{remainder}")
        child.parts["name"] = quote(name)
        schema_editor.execute(child)
        schema_editor.execute(f"ALTER INDEX {quote(index.name)} ATTACH PARTITION {quote(name)}")


def search_index_partitions(*, using: str) -> int:
    """How many partitions the search table of ``using`` has (0: a plain table, or none)."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(%s)",
                       (SearchEmbedding._meta.db_table,))
        return int(cursor.fetchone()[0])


def search_index_rebuild(*, apps: Apps, schema_editor: BaseDatabaseSchemaEditor, partitions: int,
                         always: bool = False) -> bool:
    """Drop the search table and build it again with ``partitions`` partitions (0: plain), filled from
    the current analyses; returns whether it was rebuilt. Only where the table exists, and unless
    ``always``, only where its partitioning differs (a plain table and a partitioned one; the count
    of partitions is not compared)."""
    connection = schema_editor.connection
    table = apps.get_model("moderation", "SearchEmbedding")._meta.db_table
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,))
        row = cursor.fetchone()
    if row is None or (not always and (row[0] == "p") == bool(partitions)):
        return False
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(table)}")
    return search_index_install(apps=apps, schema_editor=schema_editor, partitions=partitions)


def _partitioned_table_create(model: Any, schema_editor: BaseDatabaseSchemaEditor, *, partitions: int) -> None:
    """The table, hash-partitioned by client, without indexes.

    A partitioned table's primary key must hold the partition key: (post, client). A post has one
    client for life, so the post alone stays unique, as Django's model says.
    """
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    table = model._meta.db_table
    columns = []
    for field in model._meta.local_concrete_fields:
        check = field.db_check(connection)
        columns.append(f"{quote(field.column)} {field.db_type(connection)} NOT NULL"
                       + (f" CHECK ({check})" if check else ""))
    pk_columns = ", ".join(quote(model._meta.get_field(name).column) for name in ("post", "client"))
    schema_editor.execute(f"CREATE TABLE {quote(table)} ({', '.join(columns)}, "
                          f"CONSTRAINT {quote(table + '_pkey')} PRIMARY KEY ({pk_columns})) "
                          f"PARTITION BY HASH ({quote(model._meta.get_field('client').column)})")
    for remainder in range(partitions):
        schema_editor.execute(f"CREATE TABLE {quote(f'{table}_p{remainder}')} PARTITION OF {quote(table)} "
                              f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {remainder})")


def _vector_extension_ensure(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return False
    if row[0] is None:
        try:
            # A savepoint: a refusal (pgvector is not a trusted extension) leaves the caller's transaction usable.
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except DatabaseError:
            return False
    return True


def _current_embeddings_copy(apps: Apps, model: Any, *, using: str) -> None:
    posts = (apps.get_model("moderation", "Post").objects.using(using)
             .filter(current_analysis__image_embedding__isnull=False, content_deleted_at__isnull=True)
             .values_list("id", "client_id", "current_analysis_id", "current_analysis__model_version",
                          "current_analysis__image_embedding"))
    rows = []
    for post_id, client_id, analysis_id, model_version, embedding in posts.iterator(chunk_size=COPY_BATCH):
        if (vector := _indexable(embedding)) is not None:
            rows.append(model(post_id=post_id, client_id=client_id, analysis_id=analysis_id, embedding=vector,
                              clip_version=clip_version(model_version), dimensions=len(vector)))
        if len(rows) == COPY_BATCH:
            model.objects.using(using).bulk_create(rows)
            rows = []
    model.objects.using(using).bulk_create(rows)
