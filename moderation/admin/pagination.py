"""A changelist paginator that never counts a whole table."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property

COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows (``COUNT(*)`` over a ``LIMIT`` subquery).

    With a million posts a plain ``COUNT(*)`` reads them all on every page view; here the
    changelist shows "10001" and pages beyond the cap are reached by filtering or searching.
    """

    @cached_property
    def count(self) -> int:
        return self.object_list.values("pk")[: COUNT_CAP + 1].count()
