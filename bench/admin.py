"""Admin pages at scale: the review queue and the post changelist with 1,000,000 posts in PostgreSQL.

Run: .venv/bin/python -m bench.admin [--posts 1000000] [--repeats 7]
Needs PostgreSQL (127.0.0.1:5432, user postgres). Rows are generated in the database with
INSERT … SELECT generate_series (seconds, not minutes); the pages are then rendered through
Django's test client, logged in as a superuser, and timed server-side end to end (URL
resolution, queries, template rendering). Writes bench/results/admin.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import results_write, summary

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "moderation_bench_admin"
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 300.0

FILL_SQL = """
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
VALUES ('!', true, 'bench-admin', '', '', '', true, true, now()), ('!', false, 'bench-client', '', '', '', false, true, now());
INSERT INTO moderation_post (id, client_id, text, image, image_sha256, image_format, metadata, state, attempts,
    last_error, claimed_by, created_at, updated_at, review_priority)
SELECT md5(i::text)::uuid, (SELECT id FROM auth_user WHERE username = 'bench-client'), 'post ' || i, '', '', '', '{}',
    CASE WHEN i % 50 = 0 THEN 'needs_review' WHEN i % 7 = 0 THEN 'removed' ELSE 'allowed' END, 1, '', '',
    now() - (i || ' seconds')::interval, now(), (i % 97) / 97.0
FROM generate_series(1, __POSTS__) AS i;
INSERT INTO moderation_analysis (post_id, claim_token, policy_id, model_version, scores, decision, top_category, risk,
    explanation, timings_ms, created_at, scoring)
SELECT id, id, (SELECT max(id) FROM moderation_policy), 'clip:bench@0', '{"hate": 0.6}', 'review', 'hate',
    review_priority, '{}', '{}', created_at, 'zero_shot'
FROM moderation_post;
UPDATE moderation_post p SET current_analysis_id = a.id FROM moderation_analysis a WHERE a.post_id = p.id;
ANALYZE;
"""


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


def database_fill(posts: int) -> None:
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(ADMIN_URL, f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    started = time.perf_counter()
    psql(os.environ["DATABASE_URL"], FILL_SQL.replace("__POSTS__", str(int(posts))))
    print(f"generated {posts} posts with analyses in {time.perf_counter() - started:.0f} s", flush=True)


def page_times(paths: dict[str, str], repeats: int) -> dict[str, list[float]]:
    import django
    from django.test import Client

    django.setup()
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    samples: dict[str, list[float]] = {}
    for name, path in paths.items():
        assert client.get(path).status_code == 200, path  # warm-up, and the page must render
        samples[name] = []
        for _ in range(repeats):
            start = time.perf_counter()
            response = client.get(path)
            samples[name].append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings.test")
    database_fill(args.posts)
    paths = {"review_queue": "/admin/moderation/post/queue/", "post_changelist": "/admin/moderation/post/",
             "post_changelist_filtered": "/admin/moderation/post/?state__exact=needs_review"}
    samples = page_times(paths, args.repeats)
    figures = {name: summary(values) for name, values in samples.items()}
    payload = {"command": f".venv/bin/python -m bench.admin --posts {args.posts}", "posts": args.posts,
               "target_ms": TARGET_MS, "render_ms": figures, "samples_ms": samples,
               "within_target": {name: f["p50"] <= TARGET_MS for name, f in figures.items()}}
    path = results_write("admin", payload)
    for name, f in figures.items():
        print(f"{name}: p50 {f['p50']:.0f} ms, p95 {f['p95']:.0f} ms (target {TARGET_MS:.0f} ms)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
