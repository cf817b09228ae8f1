"""Every error code the API can return is in the README's table, and the table names no other."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from tests.conftest import ROOT

# A refusal raised with a literal code: ServiceError("code", ...), NotFound("code", ...), ImageRejected("code", ...),
# or a code handed to a helper that raises it (error_code="...").
CODE_CALL = re.compile(r'\b(?:ServiceError|NotFound|ImageRejected)\(\s*"([a-z0-9_]+)"|\berror_code="([a-z0-9_]+)"')
PROJECT_PACKAGES = ("moderation", "vlm_engine")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in PROJECT_PACKAGES}


def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name) if "." not in name or importlib.util.find_spec(name.rsplit(".", 1)[0]) else None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def api_modules() -> set[Path]:
    """The source files the API's URL configuration reaches through imports."""
    seen: set[Path] = set()
    pending = ["moderation.api.urls"]
    while pending:
        name = pending.pop()
        try:
            path = _module_file(name)
        except (ImportError, ValueError):
            path = None  # a name imported from a module, not a module
        if path is None or path in seen:
            continue
        seen.add(path)
        pending.extend(_imported_modules(path))
    return seen


def codes_in_code() -> set[str]:
    from moderation.api.errors import CODES_BY_CLASS, SERVER_ERROR_CODE
    from moderation.api.urls import urlpatterns

    found = {SERVER_ERROR_CODE, *CODES_BY_CLASS.values()}
    for pattern in urlpatterns:  # the codes views give their fields' errors
        found.update(getattr(getattr(pattern.callback, "view_class", None), "field_codes", {}).values())
    for path in api_modules():
        found.update(code for pair in CODE_CALL.findall(path.read_text()) for code in pair if code)
    return found


def codes_in_readme() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("Errors are JSON with a stable `code`:", 1)[1].lstrip("\n").split("\n\n", 1)[0]
    rows = [line.split("|") for line in table.strip().splitlines()[2:]]
    return {code for row in rows for code in re.findall(r"`([a-z0-9_]+)`", row[2])}


def test_readme_error_table_lists_exactly_the_codes_the_api_returns():  # type: ignore[no-untyped-def]
    in_code, in_readme = codes_in_code(), codes_in_readme()

    assert sorted(in_code - in_readme) == [], "codes missing from README's error table"
    assert sorted(in_readme - in_code) == [], "codes in README's error table that the API never returns"


def test_the_walk_reaches_the_services_and_the_image_checks():  # type: ignore[no-untyped-def]
    names = {p.relative_to(ROOT).as_posix() for p in api_modules()}

    assert {"moderation/services/posts.py", "moderation/services/requests.py", "vlm_engine/imaging.py",
            "moderation/api/base.py", "moderation/services/webhooks.py"} <= names
