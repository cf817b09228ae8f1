"""Fault drill: the whole deployment under load while processes are killed and the broker restarts.

Run: .venv/bin/python -m bench.drill [--posts 300] [--rate 25] [--results-dir DIR]

Starts, against real PostgreSQL and a redis-server of its own (a free loopback port, so the
outage harms nothing else): gunicorn, two GPU-queue workers (solo pool, tiny models on the
CPU), a default-queue worker and beat, each under a supervisor that restarts it when it
exits (as `restart: unless-stopped` does). It submits posts with an Idempotency-Key and an
external_id each, resends a share of them (some racing the original), registers a webhook
receiver that verifies every signature, and meanwhile injects four faults: kill -9 of a GPU
worker, a 5 s Redis outage (`shutdown nosave`, restarted empty), kill -9 of gunicorn's
master, SIGTERM of the second GPU worker. Then it checks: no post lost or duplicated, one
analysis per post, one final transition per post, one signed webhook per final state, no
5xx. Writes <results-dir>/drill.json and exits non-zero when a check fails.

PostgreSQL: DRILL_ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
the drill creates and drops the database DRILL_DATABASE (default moderation_drill) there.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import psycopg
import requests

from bench.common import RESULTS_DIR, results_write

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("DRILL_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("DRILL_DATABASE", "moderation_drill")
DB_URL = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DB_NAME}"
FINAL = ("allowed", "needs_review", "removed")
SETTLE_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    """A redis-server of the drill's own, without persistence: a restart comes back empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        _wait(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                     text=True).stdout.strip() == "PONG", timeout=20, what="redis-server")

    def outage(self, seconds: float) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        if self.proc is not None:
            self.proc.wait(timeout=20)
        time.sleep(seconds)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@dataclass
class Supervised:
    """One process of the deployment, started again whenever it exits (until ``stop``)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    running: bool = True

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def watch(self) -> None:
        while self.running:
            if self.proc is not None and self.proc.poll() is not None:
                time.sleep(1.0)  # RestartSec
                if self.running:
                    self.restarts += 1
                    self.start()
            time.sleep(0.2)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        self.running = False
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Receiver:
    """A webhook receiver on loopback that verifies each Standard Webhooks signature."""

    def __init__(self) -> None:
        self.secret = b""
        self.valid: list[dict[str, Any]] = []
        self.invalid = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.receive(dict(self.headers), body)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, headers: dict[str, str], body: bytes) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        signed = f"{lowered.get('webhook-id')}.{lowered.get('webhook-timestamp')}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(self.secret, signed, hashlib.sha256).digest()).decode()
        ok = hmac.compare_digest(expected, lowered.get("webhook-signature", ""))
        with self.lock:
            if ok:
                self.valid.append(json.loads(body))
            else:
                self.invalid += 1


@dataclass
class Load:
    """The client side: every answer's status, and the post id each external_id was given."""

    statuses: list[int] = field(default_factory=list)
    ids: dict[str, set[str]] = field(default_factory=dict)
    connection_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, external_id: str, status: int, body: dict[str, Any] | None) -> None:
        with self.lock:
            self.statuses.append(status)
            if body and "id" in body:
                self.ids.setdefault(external_id, set()).add(body["id"])


def env_for(redis_url: str, port: int) -> dict[str, str]:
    settings = {"PROFILE": "tiny", "THROTTLE_RATE": None, "QUEUED_STALE_AFTER": 3, "CLAIM_TIMEOUT": 30,
                "WEBHOOK_ALLOW_PRIVATE": True, "WEBHOOK_RETRY_DELAYS": [1, 2, 5, 10, 30]}
    var = ROOT / "var" / "drill"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.production", "DJANGO_SECRET_KEY": "drill-" * 10,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_SECURE_SSL_REDIRECT": "0", "DATABASE_URL": DB_URL,
            "CELERY_BROKER_URL": redis_url, "MODERATION_VAR_DIR": str(var), "MODERATION_TINY_DIR": str(var / "tiny"),
            "MODERATION_MEDIA_ROOT": str(var / "media"), "MODERATION_BATCH_SIZE": "8",
            "MODERATION_SWEEP_INTERVAL": "2", "MODERATION_WEBHOOK_INTERVAL": "1",
            "MODERATION_SETTINGS_JSON": json.dumps(settings), "LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", "DRILL_PORT": str(port)}


def database_reset(env: dict[str, str]) -> str:
    """A fresh database with the default policy and one API client; returns the client's key."""
    for sql in (f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)", f"CREATE DATABASE {DB_NAME}"):
        subprocess.run(["psql", ADMIN_URL, "-q", "-c", sql], check=True, capture_output=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "moderation_apikey", "drill"], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def processes(env: dict[str, str], port: int, logs: Path) -> dict[str, Supervised]:
    celery = [sys.executable, "-m", "celery", "-A", "workers"]
    solo = ["-P", "solo", "-c", "1", "--without-gossip", "--without-mingle", "-l", "info"]
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "--config", "demo/gunicorn.conf.py", "demo.wsgi",
                "-b", f"127.0.0.1:{port}", "-w", "2"],
        "gpu0": [*celery, "worker", "-Q", "gpu", "-n", "gpu0@drill", *solo],
        "gpu1": [*celery, "worker", "-Q", "gpu", "-n", "gpu1@drill", *solo],
        "default": [*celery, "worker", "-Q", "default", "-n", "default@drill", *solo],
        "beat": [*celery, "beat", "-l", "info", "-s", str(logs / "beat-schedule")],
    }
    return {name: Supervised(name, cmd, env, logs / f"{name}.log") for name, cmd in commands.items()}


def submit(session: requests.Session, base: str, key: str, i: int, load: Load, *, deadline: float) -> None:
    """One post, sent until a definitive answer: connection errors (gunicorn killed) and
    ``409 idempotency_in_progress`` are retried with the same key, as a careful client does."""
    external_id, headers = f"ext-{i}", {"Authorization": f"Api-Key {key}", "Idempotency-Key": f"key-{i}"}
    data = {"text": f"drill post {i}", "external_id": external_id}
    while time.monotonic() < deadline:
        try:
            response = session.post(f"{base}/api/v1/posts/", data=data, headers=headers, timeout=30)
        except requests.RequestException:
            with load.lock:
                load.connection_errors += 1
            time.sleep(0.5)
            continue
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else None
        load.record(external_id, response.status_code, body)
        if response.status_code == 409 or response.status_code >= 500:
            time.sleep(0.5)
            continue
        return


def load_run(base: str, key: str, *, posts: int, rate: float, faults: list[tuple[float, Callable[[], None]]],
             load: Load) -> list[dict[str, Any]]:
    """Submit ``posts`` at ``rate``; every 5th is resent after it, every 10th raced by a twin at
    once. Each fault runs when its share of the posts has been sent; returns when they ran."""
    done: list[dict[str, Any]] = []
    local = threading.local()
    deadline = time.monotonic() + posts / rate + 240

    def one(i: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        submit(session, base, key, i, load, deadline=deadline)

    pending = sorted(faults, key=lambda f: f[0])
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(posts):
            if (delay := start + i / rate - time.monotonic()) > 0:
                time.sleep(delay)
            pool.submit(one, i)
            if i % 10 == 0:
                pool.submit(one, i)  # a twin racing the original
            if i % 5 == 0 and i >= 5:
                pool.submit(one, i - 5)  # a resend of an earlier post
            while pending and i >= pending[0][0] * posts:
                at, fault = pending.pop(0)
                fault_start = time.monotonic() - start
                threading.Thread(target=fault, daemon=True).start()
                done.append({"at_post": i, "at_s": round(fault_start, 2), "fault": fault.__name__})
    return done


def settle(conn: psycopg.Connection[Any], receiver: Receiver, posts: int) -> float:
    """Wait until every post is final and every webhook arrived; returns the seconds it took."""
    start = time.monotonic()
    final_sql = "SELECT count(*) FROM moderation_post WHERE state = ANY(%s)"
    while time.monotonic() - start < SETTLE_TIMEOUT_S:
        finals = conn.execute(final_sql, [list(FINAL) + ["failed"]]).fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM moderation_webhookdelivery WHERE state = 'pending'").fetchone()[0]
        if finals >= posts and pending == 0 and len(receiver.valid) >= posts:
            return time.monotonic() - start
        time.sleep(0.5)
    return float("nan")


def checks(conn: psycopg.Connection[Any], load: Load, receiver: Receiver, posts: int) -> dict[str, Any]:
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    per_ext = conn.execute("SELECT external_id, count(*) FROM moderation_post GROUP BY external_id").fetchall()
    stored = {ext: n for ext, n in per_ext}
    answered_ids = {ext: ids for ext, ids in load.ids.items()}
    final_events = conn.execute(
        "SELECT p.id, count(e.id) FROM moderation_post p LEFT JOIN moderation_postevent e ON e.post_id = p.id "
        "AND e.from_state = 'analyzing' AND e.to_state = ANY(%s) GROUP BY p.id", [list(FINAL) + ["failed"]]).fetchall()
    analyses = conn.execute("SELECT p.id, p.state, count(a.id) FROM moderation_post p LEFT JOIN moderation_analysis a "
                            "ON a.post_id = p.id GROUP BY p.id, p.state").fetchall()
    states = dict(conn.execute("SELECT state, count(*) FROM moderation_post GROUP BY state").fetchall())
    webhooks: dict[tuple[str, str], int] = {}
    for payload in receiver.valid:
        pair = (payload["post"]["id"], payload["post"]["status"])
        webhooks[pair] = webhooks.get(pair, 0) + 1
    post_states = {str(pid): state for pid, state, _ in analyses}
    figures = {
        "posts_stored": len(post_states), "posts_expected": posts, "states": states,
        "responses": {str(s): load.statuses.count(s) for s in sorted(set(load.statuses))},
        "client_connection_errors": load.connection_errors,
        "webhooks_valid": len(receiver.valid), "webhooks_bad_signature": receiver.invalid,
        "attempts_max": one("SELECT max(attempts) FROM moderation_post"),
    }
    result = {
        "no_post_lost": all(stored.get(f"ext-{i}", 0) >= 1 for i in range(posts)),
        "no_post_duplicated": all(n == 1 for n in stored.values()) and all(len(v) == 1 for v in answered_ids.values()),
        "every_answer_names_the_stored_post": all(
            ids <= {str(pid) for pid in post_states} for ids in answered_ids.values()),
        "one_analysis_per_post": all(n == (0 if state == "failed" else 1) for _, state, n in analyses),
        "no_post_failed": states.get("failed", 0) == 0,
        "one_final_transition_per_post": all(n == 1 for _, n in final_events),
        "one_signed_webhook_per_final_state": receiver.invalid == 0 and len(webhooks) == len(post_states)
        and all(n == 1 for n in webhooks.values())
        and all(post_states.get(pid) == status for pid, status in webhooks),
        "no_5xx": not any(s >= 500 for s in load.statuses),
    }
    return {"checks": result, "figures": figures, "passed": all(result.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds Redis stays down")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    logs = ROOT / "var" / "drill" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis, port = Redis(), free_port()
    redis.start()
    env = env_for(redis.url, port)
    key = database_reset(env)
    procs = processes(env, port, logs)
    receiver, load = Receiver(), Load()
    started = time.monotonic()
    try:
        for proc in procs.values():
            proc.start()
            threading.Thread(target=proc.watch, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _up(f"{base}/healthz"), timeout=120, what="gunicorn")
        answer = requests.put(f"{base}/api/v1/webhook/", json={"url": receiver.url},
                              headers={"Authorization": f"Api-Key {key}"}, timeout=30)
        answer.raise_for_status()
        receiver.secret = base64.b64decode(answer.json()["secret"].removeprefix("whsec_"))
        notes: dict[str, Any] = {}
        workers = "SELECT count(*) FROM moderation_workerheartbeat"
        with psycopg.connect(DB_URL, autocommit=True) as conn:  # every worker is consuming
            _wait(lambda: conn.execute(workers).fetchone()[0] >= 3, timeout=180, what="three worker heartbeats")

        def kill_gpu_worker() -> None:
            # Preferably while it holds a claim, so the kill costs something to recover from.
            held = "SELECT count(*) FROM moderation_post WHERE state = 'analyzing' AND claimed_by = 'gpu0@drill'"
            with psycopg.connect(DB_URL, autocommit=True) as conn:
                _wait(lambda: conn.execute(held).fetchone()[0] > 0, timeout=10, what="a claim of gpu0",
                      required=False)
                notes["gpu0_claims_when_killed"] = conn.execute(held).fetchone()[0]
            procs["gpu0"].signal(signal.SIGKILL)

        def redis_outage() -> None:
            redis.outage(args.outage)

        def kill_gunicorn() -> None:
            procs["web"].signal(signal.SIGKILL)

        def sigterm_gpu_worker() -> None:
            procs["gpu1"].signal(signal.SIGTERM)

        faults = [(0.2, kill_gpu_worker), (0.4, redis_outage), (0.6, kill_gunicorn), (0.8, sigterm_gpu_worker)]
        injected = load_run(base, key, posts=args.posts, rate=args.rate, faults=faults, load=load)
        load_s = time.monotonic() - started
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            settle_s = settle(conn, receiver, args.posts)
            outcome = checks(conn, load, receiver, args.posts)
    finally:
        for proc in procs.values():
            proc.stop()
        redis.stop()
        receiver.server.shutdown()
    payload = {"config": {"posts": args.posts, "rate": args.rate, "outage_s": args.outage, "batch_size": 8,
                          "gpu_workers": 2, "profile": "tiny"},
               "faults": injected, "fault_notes": notes, "restarts": {name: p.restarts for name, p in procs.items()},
               "load_s": round(load_s, 1), "settle_s": round(settle_s, 1), **outcome}
    path = results_write("drill", payload, args.results_dir)
    print(json.dumps({"passed": outcome["passed"], **outcome["checks"], "results": str(path)}, indent=2))
    return 0 if outcome["passed"] else 1


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait(predicate: Callable[[], bool], *, timeout: float, what: str, required: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    if required:
        raise RuntimeError(f"{what} did not come up within {timeout}s")


if __name__ == "__main__":
    sys.exit(main())
