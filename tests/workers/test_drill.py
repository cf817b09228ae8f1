"""The fault drill, small: every process of a deployment, four faults, nothing lost or doubled."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, require_service

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.slow]


def test_drill_loses_nothing_and_doubles_nothing(tmp_path):  # type: ignore[no-untyped-def]
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        require_service("the drill needs PostgreSQL (DATABASE_URL)")
    if shutil.which("redis-server") is None:
        require_service("redis-server is not installed")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    database = url.rsplit("/", 1)[1].split("?")[0] + "_drill"
    env = {**os.environ, "DRILL_ADMIN_DATABASE_URL": admin, "DRILL_DATABASE": database}

    run = subprocess.run([sys.executable, "-m", "bench.drill", "--posts", "30", "--rate", "15", "--outage", "2",
                          "--results-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "drill.json").read_text())
    assert [f["fault"] for f in result["faults"]] == ["kill_gpu_worker", "redis_outage", "kill_gunicorn",
                                                      "sigterm_gpu_worker"]
    assert result["figures"]["posts_stored"] == 30
    assert result["figures"]["webhooks_valid"] == 30
    assert set(result["checks"].values()) == {True}
