"""Row locking that lets concurrent workers and reviewers take disjoint rows."""
from __future__ import annotations

from typing import TypeVar

from django.db import connection
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def rows_lock_skipping_locked(qs: QuerySet[M]) -> QuerySet[M]:
    """``SELECT … FOR UPDATE SKIP LOCKED`` where the database has it (PostgreSQL), else a plain
    ``FOR UPDATE`` (SQLite serialises writers anyway). Callers still change rows with a
    conditional UPDATE, so correctness never rests on the lock alone."""
    if connection.features.has_select_for_update_skip_locked:
        return qs.select_for_update(skip_locked=True)
    return qs.select_for_update()
