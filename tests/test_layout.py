"""The dependency rules of the layout (DESIGN.md, "Layout"):

- ``vlm_engine`` imports neither Django nor Celery nor the other two packages;
- ``moderation`` never imports ``workers`` (it enqueues by task name), nor torch/transformers;
- the web process imports and runs without torch installed.

(tests/vlm_engine/test_imports.py checks that vlm_engine's light modules don't load torch.)
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module, wherever it stands
    (module level, functions, ``if TYPE_CHECKING`` blocks), plus ``importlib.import_module("x")``
    and ``__import__("x")`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def _violations(package: str, forbidden: set[str]) -> list[str]:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    return [f"{path.relative_to(ROOT)}:{line} imports {name}"
            for path in modules for line, name in _imports(path) if name in forbidden]


def test_import_scanner_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(textwrap.dedent("""\
        import os, django.db
        from celery import shared_task
        from . import sibling
        def f():
            from workers.tasks import x
            import importlib
            importlib.import_module("rest_framework.views")
            __import__("torch")
        """))
    assert [name for _, name in _imports(module)] == [
        "os", "django", "celery", "workers", "importlib", "rest_framework", "torch"]


def test_vlm_engine_imports_no_web_or_queue_code() -> None:
    forbidden = {"django", "celery", "kombu", "rest_framework", "drf_spectacular", "moderation", "workers"}
    assert _violations("vlm_engine", forbidden) == []


def test_moderation_never_imports_workers_or_model_runtimes() -> None:
    assert _violations("moderation", {"workers", "torch", "transformers"}) == []


# Runs in a fresh interpreter: torch and transformers ARE installed in the test virtualenv, so an
# import hook makes them unimportable, as on a web-only install (tests/test_packaging.py checks
# the real thing: the wheel in a virtualenv without torch).
WEB_WITHOUT_TORCH = """
import importlib, pkgutil, sys

BLOCKED = {"torch", "transformers"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the web process must run without it")
        return None

sys.meta_path.insert(0, Blocker())
try:
    import torch
except ImportError:
    pass
else:
    raise AssertionError("the import blocker does not work")

import django
django.setup()

import demo.urls
import moderation
import moderation.admin
# Every module of the Django app (management commands and migrations included).
for info in pkgutil.walk_packages(moderation.__path__, "moderation."):
    importlib.import_module(info.name)

from django.urls import resolve, reverse
names = {"posts": {}, "post-detail": {"post_id": "00000000-0000-0000-0000-000000000001"},
         "schema": {}, "docs": {}, "healthz": {}, "readyz": {}}
for name, kwargs in names.items():
    url = reverse(f"moderation:{name}", kwargs=kwargs)
    assert resolve(url).url_name == name, (name, url)
print("urls", sorted(reverse(f"moderation:{n}", kwargs=k) for n, k in names.items()))

from drf_spectacular.generators import SchemaGenerator
schema = SchemaGenerator().get_schema(request=None, public=True)
assert "/api/v1/posts/" in schema["paths"], sorted(schema["paths"])

from django.core.management import call_command
call_command("check", fail_level="WARNING")

loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("web process OK without torch")
"""


def test_web_process_runs_without_torch() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings.test", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", WEB_WITHOUT_TORCH], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web process OK without torch" in result.stdout

