"""The demo's embedded broker (demo/broker.py) with several writer processes and one consumer.

Each writer sends from a process whose other thread keeps the GIL busy, as a web process serving
requests does, so sends are often paused half-way. kombu's file-system transport, the demo's
earlier default, fails this: its consumer reads files a paused writer has created but not yet
filled (JSONDecodeError) and the messages in them are lost.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from demo.broker import TRANSPORT, broker_url
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
WRITERS, MESSAGES = 4, 300
WRITER = """
import sys, threading
from kombu import Connection

def busy():
    n = 0
    while True:
        n = (n + 1) % 1000003

threading.Thread(target=busy, daemon=True).start()
url, transport, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Connection(url, transport=transport) as connection:
    queue = connection.SimpleQueue("race")
    for i in range(count):
        queue.put({"writer": writer, "i": i, "padding": "x" * 200})
    queue.close()
"""


def test_every_message_arrives_once_whole_from_concurrent_writers(tmp_path: Path) -> None:
    url = broker_url(tmp_path / "broker.sqlite3")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, TRANSPORT, str(w), str(MESSAGES)], cwd=ROOT)
               for w in range(WRITERS)]
    received: list[tuple[int, int]] = []
    deadline = time.monotonic() + 300
    with Connection(url, transport=TRANSPORT) as connection:
        queue = connection.SimpleQueue("race")
        while len(received) < WRITERS * MESSAGES and time.monotonic() < deadline:
            try:
                message = queue.get(timeout=1)
            except Empty:
                continue
            received.append((message.payload["writer"], message.payload["i"]))
            message.ack()
        queue.close()
    for writer in writers:
        assert writer.wait(timeout=60) == 0

    assert sorted(received) == [(w, i) for w in range(WRITERS) for i in range(MESSAGES)]
