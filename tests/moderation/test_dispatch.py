"""The wake-up publisher: commits during the interval after a send share the next message."""
from __future__ import annotations

import threading
import time

import pytest

from moderation import dispatch


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    log: list[tuple[float, str]] = []
    lock = threading.Lock()

    def record(name: str, queue: str) -> None:
        with lock:
            log.append((time.monotonic(), name))

    monkeypatch.setattr(dispatch, "_task_send", record)
    return log


def test_a_lone_wakeup_is_sent_at_once(settings, sent):
    settings.MODERATION = {"WAKEUP_INTERVAL": 0.5}
    publisher = dispatch._Publisher()
    asked = time.monotonic()
    publisher.request("moderation.analyze_pending", "gpu")
    assert publisher.flush(5)
    assert len(sent) == 1
    assert sent[0][0] - asked < 0.25


def test_wakeups_right_after_a_send_are_merged_into_one(settings, sent):
    settings.MODERATION = {"WAKEUP_INTERVAL": 0.3}
    publisher = dispatch._Publisher()
    publisher.request("moderation.analyze_pending", "gpu")
    assert publisher.flush(5)
    for _ in range(20):
        publisher.request("moderation.analyze_pending", "gpu")
        time.sleep(0.005)
    assert publisher.flush(5)
    assert [name for _, name in sent] == ["moderation.analyze_pending"] * 2
    # The merged message still follows every request that it stands for.
    assert sent[1][0] - sent[0][0] >= 0.3


def test_different_tasks_are_each_sent(settings, sent):
    settings.MODERATION = {"WAKEUP_INTERVAL": 0.0}
    publisher = dispatch._Publisher()
    publisher.request("moderation.analyze_pending", "gpu")
    publisher.request("moderation.deliver_webhooks", "default")
    assert publisher.flush(5)
    assert sorted(name for _, name in sent) == ["moderation.analyze_pending", "moderation.deliver_webhooks"]


def test_the_publisher_survives_a_failing_send(settings, monkeypatch):
    settings.MODERATION = {"WAKEUP_INTERVAL": 0.0}
    sent = []

    def send_task(name, **kwargs):  # type: ignore[no-untyped-def]
        if not sent:
            sent.append("failed")
            raise RuntimeError("Acquire on closed pool")  # what kombu raises after the app's pools close
        sent.append(name)

    monkeypatch.setattr(dispatch.current_app, "send_task", send_task)
    publisher = dispatch._Publisher()
    publisher.request("moderation.analyze_pending", "gpu")
    assert publisher.flush(5)
    publisher.request("moderation.analyze_pending", "gpu")
    assert publisher.flush(5)
    assert sent == ["failed", "moderation.analyze_pending"]
