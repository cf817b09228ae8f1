"""pgvector index of image embeddings: an HNSW (cosine) candidate search on PostgreSQL.

The index is a derived copy of ``Analysis.image_embedding``, one table per embedding
dimension (``moderation_embedding_<dim>``, ``embedding vector(<dim>)``), because an HNSW
index needs a fixed dimension and CLIP models differ in theirs. It is created lazily, needs
no migration (SQLite and PostgreSQL without pgvector never see it), and is brought up to
date from the analyses by ``search_index_sync`` before every query. It has no foreign keys
on purpose: Django's test flush truncates the app's tables without CASCADE, and a
constraint from an unmanaged table would make that fail; rows of posts that are gone or
re-analysed are dropped by the next sync of their client instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import F, QuerySet

from moderation.models import Analysis, Post

# HNSW indexes on ``vector`` accept at most 2000 dimensions.
HNSW_MAX_DIMENSIONS = 2000
# ``hnsw.ef_search`` is capped at 1000 by pgvector.
EF_SEARCH_MAX = 1000

# Per database (alias and where it points): the pgvector version, or None when unusable.
_VECTOR_VERSIONS: dict[tuple[str, ...], tuple[int, ...] | None] = {}


def pgvector_version(*, using: str) -> tuple[int, ...] | None:
    """The pgvector version of database ``using``, creating the extension if it is only available.

    None when the database is not PostgreSQL, has no pgvector, or this role may not create it.
    Cached per alias and server, so a search asks the catalogue once per process.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    conf = connection.settings_dict
    key = (using, str(conf.get("HOST")), str(conf.get("PORT")), str(conf.get("NAME")))
    if key not in _VECTOR_VERSIONS:
        _VECTOR_VERSIONS[key] = _vector_extension_ready(connection)
    return _VECTOR_VERSIONS[key]


def _vector_extension_ready(connection: BaseDatabaseWrapper) -> tuple[int, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT installed_version, default_version FROM pg_available_extensions WHERE name = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return None
    if row[0] is None:
        try:
            # A savepoint, so a refusal (pgvector is not a trusted extension) leaves the caller's transaction usable.
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except DatabaseError:
            return None
    return tuple(int(part) for part in (row[0] or row[1]).split(".") if part.isdigit())


def pgvector_supports(*, dimensions: int, using: str) -> bool:
    """Whether ``using`` can answer a search over embeddings of ``dimensions`` with pgvector."""
    return 0 < dimensions <= HNSW_MAX_DIMENSIONS and pgvector_version(using=using) is not None


def search_index_table(dimensions: int) -> str:
    return f"moderation_embedding_{int(dimensions)}"


def search_index_sync(*, posts: QuerySet[Post], client_id: Any, clip: str, dimensions: int, using: str) -> int:
    """Make the index hold exactly the current embeddings of ``posts`` (one client, one CLIP).

    ``posts`` are the client's searchable posts (current analysis by ``clip``, with an image
    embedding). Rows of posts that left that set are deleted, missing or outdated ones
    upserted. Returns the number of rows written.
    """
    connection = connections[using]
    table = search_index_table(dimensions)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        _index_table_ensure(cursor, connection=connection, dimensions=dimensions)
        current_sql, params = _sql(posts.values_list("id", "current_analysis_id"), using=using)
        cursor.execute(f"DELETE FROM {table} WHERE client_id = %s AND clip_version = %s "
                       f"AND (post_id, analysis_id) NOT IN ({current_sql})", (client_id, clip, *params))
        missing = posts.values(pid=F("id"), aid=F("current_analysis_id"), emb=F("current_analysis__image_embedding"))
        missing_sql, params = _sql(missing, using=using)
        cursor.execute(f"SELECT s.pid, s.aid, s.emb FROM ({missing_sql}) s WHERE NOT EXISTS "
                       f"(SELECT 1 FROM {table} e WHERE e.post_id = s.pid AND e.analysis_id = s.aid) ORDER BY s.pid",
                       params)
        rows = [(pid, aid, client_id, clip, _vector_literal(bytes(emb)))
                for pid, aid, emb in cursor.fetchall() if len(emb) == 4 * dimensions]
        cursor.executemany(f"INSERT INTO {table} (post_id, analysis_id, client_id, clip_version, embedding) "
                           "VALUES (%s, %s, %s, %s, %s::vector) ON CONFLICT (post_id) DO UPDATE SET "
                           "analysis_id = EXCLUDED.analysis_id, client_id = EXCLUDED.client_id, "
                           "clip_version = EXCLUDED.clip_version, embedding = EXCLUDED.embedding", rows)
    return len(rows)


def _sql(queryset: QuerySet[Any], *, using: str) -> tuple[str, tuple[Any, ...]]:
    # Compiled for ``using``: ``query.sql_with_params()`` would compile for the default database.
    sql, params = queryset.query.get_compiler(using=using).as_sql()
    return sql, tuple(params)


def _index_table_ensure(cursor: CursorWrapper, *, connection: BaseDatabaseWrapper, dimensions: int) -> None:
    table = search_index_table(dimensions)
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    if cursor.fetchone()[0]:
        return
    # Two first searches at once would race on CREATE TABLE IF NOT EXISTS (a duplicate pg_type row).
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
    post_id = Post._meta.pk.db_type(connection)
    client_id = Post._meta.get_field("client").db_type(connection)
    analysis_id = Analysis._meta.pk.rel_db_type(connection)
    cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} (post_id {post_id} PRIMARY KEY, "
                   f"analysis_id {analysis_id} NOT NULL, client_id {client_id} NOT NULL, "
                   f"clip_version text NOT NULL, embedding vector({int(dimensions)}) NOT NULL)")
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {table}_client ON {table} (client_id, clip_version)")
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)")


def _vector_literal(embedding: bytes) -> str:
    # float32 → Python float is exact and repr() round-trips, so pgvector stores the same float32 values.
    return "[" + ",".join(repr(v) for v in np.frombuffer(embedding, dtype="<f4").tolist()) + "]"


def search_index_candidates(*, client_id: Any, clip: str, vector: np.ndarray, limit: int,
                            using: str) -> list[tuple[Any, bytes]]:
    """Up to ``limit`` (post id, stored image embedding) of the client's nearest posts by HNSW.

    Approximate: HNSW may miss a neighbour, so callers ask for more than they need and rescore.
    ``hnsw.ef_search`` is raised to at least the limit (it bounds how many rows a scan returns)
    and, from pgvector 0.8, ``hnsw.iterative_scan`` keeps a filtered scan going until it has
    enough rows of this client.
    """
    connection = connections[using]
    table = search_index_table(len(vector))
    version = pgvector_version(using=using) or ()
    with transaction.atomic(using=using), connection.cursor() as cursor:
        ef_search = min(EF_SEARCH_MAX, max(100, 2 * limit))
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
        if version >= (0, 8):
            cursor.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
        cursor.execute(f"SELECT e.post_id, a.image_embedding FROM (SELECT post_id, analysis_id FROM {table} "
                       "WHERE client_id = %s AND clip_version = %s ORDER BY embedding <=> %s::vector LIMIT %s) e "
                       f"JOIN {Analysis._meta.db_table} a ON a.id = e.analysis_id",
                       (client_id, clip, _vector_literal(np.asarray(vector, dtype="<f4").tobytes()), limit))
        return [(post_id, bytes(embedding)) for post_id, embedding in cursor.fetchall()]
