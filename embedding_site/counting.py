"""Counting rows cheaply on tables of millions: a capped exact count, else the planner's estimate.

Used by the queue's figures (`queue_admin/queue_counts.py`: dashboard, `queue_status`,
`/metrics`) and by the admin's big lists (`EstimatedCountPaginator`), so every page says
"≈" the same way and for the same reason.
"""

import json

from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property


def planner_rows(cursor, query: str, params) -> int:
    """The planner's estimate of how many rows `query` returns (EXPLAIN, nothing is read)."""
    cursor.execute(f"EXPLAIN (FORMAT JSON) {query}", params)
    plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


def capped_count(cursor, query: str, params, limit: int) -> int | None:
    """Rows of `query`, reading at most `limit` + 1 of them; None when there are more."""
    cursor.execute(f"SELECT count(*) FROM ({query} LIMIT %s) capped", [*params, limit + 1])
    rows = cursor.fetchone()[0]
    return rows if rows <= limit else None


class EstimatedCountPaginator(Paginator):
    """The admin's paginator for big tables: exact counts for small results, estimates past
    `exact_up_to` rows.

    Django's change list counts the filtered rows on every page view; on a table of a million
    rows that COUNT(*) costs more than the page itself. Counting stops after `exact_up_to` + 1
    rows (cheap, and exact for every small filter); only past that does the planner's estimate
    stand in, and `estimated` tells the templates (admin/pagination.html, admin/actions.html)
    to say "≈".
    """

    exact_up_to = 10_000
    estimated = False

    @cached_property
    def count(self):
        # Only the ids: computed columns and ordering are not needed to count.
        try:
            sql, params = self.object_list.order_by().values("pk").query.sql_with_params()
        except EmptyResultSet:  # a filter that can match nothing (e.g. .none()) has no SQL
            return 0
        with connection.cursor() as cursor:
            exact = capped_count(cursor, sql, params, self.exact_up_to)
            if exact is not None:
                return exact
            self.estimated = True
            return max(planner_rows(cursor, sql, params), self.exact_up_to + 1)
