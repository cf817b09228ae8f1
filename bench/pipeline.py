"""End-to-end pipeline benchmark: gunicorn + real Celery workers + PostgreSQL + Redis, tiny models.

Run: .venv/bin/python -m bench.pipeline [--posts 600] [--rate 100] [--baseline CHECKOUT] [--reader] [--results-dir DIR]
Needs PostgreSQL (BENCH_ADMIN_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres; the
benchmark creates and drops its own database there) and Redis (BENCH_BROKER_URL, default
redis://127.0.0.1:6379/7, a database it empties: never point it at a broker in use); BENCH_DB_NAME and
BENCH_PORT name its database and the web server's port, for two runs on one machine. Writes
bench/results/pipeline-rate<rate>[-baseline].json. The batched build and a naive build (batch size 1:
one claim, one engine call and one set of row writes per post, a wake-up message per commit) run in
the same invocation on the same load; every figure is reported for both, and ratios only when both
sides completed. With --baseline, the batched build of another checkout runs on the same load too
(before/after). Each build also reports the CPU time per post of the web server, the worker,
PostgreSQL, Redis and the load generator: where the machine's two cores went. The worker runs
torch with one thread (OMP_NUM_THREADS=1): on two cores shared by six processes, a second
thread only spins.

With --reader every post's image carries a line of meme text, and a third build runs the batched
worker with the RapidOCR reader on (the other two read nothing): posts/s with the reader on and
off on the same load, written to pipeline-rate<rate>-reader.json. The worker reads each batch's
images in its decode-ahead thread while the models run on the batch before.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import psutil
import psycopg
import requests
from PIL import Image, ImageDraw, ImageFont

from bench.common import RESULTS_DIR, BenchmarkFailed, ratio, results_write, summary

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("BENCH_PORT", "8765"))
BASE = f"http://127.0.0.1:{PORT}"
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB_NAME", "moderation_bench")
BENCH_DB_URL = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DB_NAME}"
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")
VAR = ROOT / "var" / "bench"
CLIENT_THREADS = 32
MEME_LINE = "WHEN THE BUILD PASSES FIRST TRY"
NO_LOOK_CLOSER = {"grounder": "", "generator": "", "verifier": ""}


def env_for(batch_size: int, extra_settings: dict[str, Any] | None = None) -> dict[str, str]:
    # Tiny CLIP only: the figure is the platform's own overhead, not the models'.
    settings = {"PROFILE": "tiny", "THROTTLE_RATE": None, "QUEUED_STALE_AFTER": 5,
                "MODELS": NO_LOOK_CLOSER, **(extra_settings or {})}
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.production", "DJANGO_SECRET_KEY": "bench-" * 10,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": BENCH_DB_URL, "CELERY_BROKER_URL": BROKER,
            "MODERATION_VAR_DIR": str(VAR), "MODERATION_TINY_DIR": str(VAR / "tiny"),
            "MODERATION_BATCH_SIZE": str(batch_size), "MODERATION_SETTINGS_JSON": json.dumps(settings),
            "LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}


def psql(sql: str) -> None:
    subprocess.run(["psql", ADMIN_URL, "-q", "-c", sql], check=True, capture_output=True)


def database_reset(env: dict[str, str], code: Path = ROOT) -> str:
    """A fresh database with the default policy and one API client; returns the client's key."""
    psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB_NAME}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=code, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "moderation_apikey", "bench"], cwd=code, env=env,
                         check=True, capture_output=True, text=True).stdout
    subprocess.run(["redis-cli", "-u", BROKER, "FLUSHDB"], check=True, capture_output=True)
    return out.strip().splitlines()[-1]


@contextmanager
def services(env: dict[str, str], code: Path = ROOT) -> Iterator[dict[str, int]]:
    """gunicorn (2 workers) and one solo Celery worker on the gpu and default queues, run from ``code``."""
    log = (VAR / "services.log").open("ab")
    config = code / "demo" / "gunicorn.conf.py"
    # A checkout from before demo/gunicorn.conf.py ran gunicorn's defaults (sync workers).
    options = ["--config", str(config)] if config.exists() else []
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", *options, "demo.wsgi", "-b", f"127.0.0.1:{PORT}",
                            "-w", "2"], cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=log)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "gpu,default",
                               "-P", "solo", "-c", "1", "-n", "bench@%h", "--without-gossip", "--without-mingle",
                               "--without-heartbeat", "-l", "warning"], cwd=code, env=env, stdout=log, stderr=log)
    try:
        _wait_http(f"{BASE}/healthz", timeout=60)
        yield {"web": web.pid, "worker": worker.pid}
    finally:
        for proc in (web, worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (web, worker):
            proc.wait(timeout=60)
        log.close()


def _wait_http(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a loaded machine
            pass
        time.sleep(0.2)
    raise BenchmarkFailed(f"{url} did not come up")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by each part of the system, children included."""
    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            return sum(_cpu(p) for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0.0

    def named(name: str) -> float:
        return sum(_cpu(p) for p in psutil.process_iter(["name"]) if p.info["name"] == name)

    return {"web": tree(pids["web"]), "worker": tree(pids["worker"]), "postgres": named("postgres"),
            "redis": named("redis-server"), "load_generator": _cpu(psutil.Process())}


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return times.user + times.system


def png_bytes(text: str = "") -> bytes:
    """A small flat PNG; with `text`, a meme-sized one with that line drawn on it (for the reader)."""
    buffer = io.BytesIO()
    if not text:
        Image.new("RGB", (64, 64), (120, 30, 200)).save(buffer, format="PNG")
        return buffer.getvalue()
    image = Image.new("RGB", (480, 160), (236, 232, 226))
    ImageDraw.Draw(image).text((20, 60), text, fill="black", font=ImageFont.load_default(size=30))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart_body(boundary: str, image: bytes, text: str) -> bytes:
    return b"".join([
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode(), image, f"\r\n--{boundary}--\r\n".encode()])


def open_loop(key: str, *, count: int, rate: float, image: bytes | None = None) -> list[float]:
    """Submit ``count`` posts at a fixed arrival rate, not waiting for answers; latencies in ms.

    Each latency runs from the post's scheduled arrival, not from when a client thread got to
    it, so a saturated server cannot hide its queue (no coordinated omission). A fixed pool of
    client threads, each with its own keep-alive connection, sends bodies encoded before the
    clock starts, so the generator takes as little of the machine's CPU as it can.
    """
    boundary = "benchboundary7d4a"
    image = png_bytes() if image is None else image
    bodies = [multipart_body(boundary, image, f"bench post {i}") for i in range(count)]
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    latencies, errors = [], []
    lock = threading.Lock()
    local = threading.local()

    def submit(i: int, due: float) -> None:
        status = 0
        for _ in range(2):  # once more on a fresh connection if the server closed an idle one
            conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            local.conn = conn
            try:
                conn.request("POST", "/api/v1/posts/", body=bodies[i], headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                local.conn = None
        with lock:
            (latencies if status == 202 else errors).append((time.perf_counter() - due) * 1000)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        for i in range(count):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            pool.submit(submit, i, due)
    if errors:
        raise BenchmarkFailed(f"{len(errors)} submits failed")
    return latencies


def verdict_times(expected: int, timeout: float) -> dict[str, Any]:
    """Wait until every post has a verdict; time-to-verdict per post and the end-to-end rate."""
    sql = ("SELECT extract(epoch FROM p.created_at), extract(epoch FROM a.created_at) FROM moderation_post p "
           "JOIN moderation_analysis a ON a.id = p.current_analysis_id")
    deadline = time.monotonic() + timeout
    with psycopg.connect(BENCH_DB_URL, autocommit=True) as conn:
        while len(rows := conn.execute(sql).fetchall()) < expected:
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"only {len(rows)}/{expected} verdicts after {timeout}s")
            time.sleep(0.5)
    pairs = [(float(c), float(d)) for c, d in rows]
    ttv = [(done - created) * 1000 for created, done in pairs]
    first, last = min(c for c, _ in pairs), max(d for _, d in pairs)
    return {"time_to_verdict_ms": summary(ttv), "posts_per_s": expected / (last - first)}


def idle_latency(key: str, *, count: int, image: bytes | None = None) -> dict[str, float]:
    """Lone posts, one at a time: batching must not hold them back."""
    for i in range(count):
        open_loop(key, count=1, rate=1, image=image)
        time.sleep(0.5)
    return verdict_times(count, timeout=60)["time_to_verdict_ms"]


def run_build(name: str, batch_size: int, args: argparse.Namespace, code: Path = ROOT,
              extra_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    env = env_for(batch_size, extra_settings)
    key = database_reset(env, code)
    image = png_bytes(MEME_LINE if args.reader else "")
    with services(env, code) as pids:
        open_loop(key, count=1, rate=1, image=image)  # warm-up: the worker loads its models on the first batch
        verdict_times(1, timeout=120)
        database_reset_posts()
        idle = idle_latency(key, count=args.idle_posts, image=image)
        database_reset_posts()
        before = cpu_seconds(pids)
        submit = open_loop(key, count=args.posts, rate=args.rate, image=image)
        load = verdict_times(args.posts, timeout=args.timeout)
        after = cpu_seconds(pids)
    # Where the machine's time went under load: CPU ms per post for each process group.
    cpu = {part: (after[part] - before[part]) * 1000 / args.posts for part in before}
    result = {"batch_size": batch_size, "submit_latency_ms": summary(submit), "idle_time_to_verdict_ms": idle,
              "cpu_ms_per_post": cpu, **load}
    print(f"{name}: {load['posts_per_s']:.1f} posts/s, submit p95 {result['submit_latency_ms']['p95']:.1f} ms, "
          f"TTV p95 {load['time_to_verdict_ms']['p95']:.0f} ms, idle TTV p95 {idle['p95']:.0f} ms; CPU ms/post "
          + ", ".join(f"{part} {ms:.1f}" for part, ms in cpu.items()), flush=True)
    return result


def database_reset_posts() -> None:
    with psycopg.connect(BENCH_DB_URL, autocommit=True) as conn:
        conn.execute("TRUNCATE moderation_postevent, moderation_analysis, moderation_post CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=600)
    parser.add_argument("--rate", type=float, default=100.0, help="arrival rate, posts per second")
    parser.add_argument("--idle-posts", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (e.g. a git worktree of an older commit): its batched build "
                             "runs on the same load as a third build, for a before/after ratio")
    parser.add_argument("--reader", action="store_true",
                        help="images with text, and the batched build with the RapidOCR reader on as well")
    args = parser.parse_args()
    VAR.mkdir(parents=True, exist_ok=True)
    # The naive build: batch size 1 (one claim, one engine call, one set of row writes per
    # post) and a wake-up message per commit (no merging), i.e. about one task per post.
    builds = {"batched": run_build("batched", 16, args),
              "naive": run_build("naive", 1, args, extra_settings={"WAKEUP_INTERVAL": 0})}
    command = f".venv/bin/python -m bench.pipeline --posts {args.posts} --rate {args.rate:g}"
    payload: dict[str, Any] = {
        "arrival_rate": args.rate, "posts": args.posts, "builds": builds,
        "ratio_throughput_batched_over_naive": ratio(builds["batched"]["posts_per_s"],
                                                     builds["naive"]["posts_per_s"])}
    name = f"pipeline-rate{args.rate:g}"
    if args.reader:
        builds["reader"] = run_build("batched, reader on", 16, args,
                                     extra_settings={"MODELS": {**NO_LOOK_CLOSER, "reader": "rapidocr"}})
        payload["ratio_throughput_reader_on_over_off"] = ratio(builds["reader"]["posts_per_s"],
                                                               builds["batched"]["posts_per_s"])
        command += " --reader"
        name += "-reader"
    if args.baseline:
        baseline = args.baseline.resolve()
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=baseline, capture_output=True,
                                  text=True, check=True).stdout.strip()
        builds["baseline"] = {"checkout": revision, **run_build(f"baseline {revision}", 16, args, baseline)}
        payload["ratio_throughput_batched_over_baseline"] = ratio(builds["batched"]["posts_per_s"],
                                                                  builds["baseline"]["posts_per_s"])
        command += f" --baseline {args.baseline}"
        name += "-baseline"
    path = results_write(name, {"command": command, **payload}, args.results_dir)
    print(f"batched / naive throughput: {payload['ratio_throughput_batched_over_naive']:.2f}x", end="")
    if args.reader:
        print(f"; reader on / off: {payload['ratio_throughput_reader_on_over_off']:.2f}x", end="")
    if args.baseline:
        print(f"; batched / baseline: {payload['ratio_throughput_batched_over_baseline']:.2f}x", end="")
    print(f"; wrote {path}")


if __name__ == "__main__":
    main()
