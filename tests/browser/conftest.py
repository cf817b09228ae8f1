"""Browser fixtures: Debian's Chromium driven by Playwright; real workers come from tests/workers."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.workers.conftest import start_worker, worker_env  # noqa: F401  (fixtures for the browser tests)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture
def browser(monkeypatch):  # type: ignore[no-untyped-def]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("Playwright for Python is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        require_service(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the test's ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
