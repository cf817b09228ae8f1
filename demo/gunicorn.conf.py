"""gunicorn settings of the demo site, shared by docker-compose.yml and bench/pipeline.py.

Threaded workers keep a client's connection open between its requests and let one request
run while another waits on PostgreSQL; on the 2-core pipeline benchmark this took the web
side from about 130 to about 170 submits a second against two single-threaded workers.
"""
from __future__ import annotations

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = 5
timeout = 60
accesslog = "-"
