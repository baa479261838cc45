"""Queue depth that stays cheap on a queue of millions of rows: exact while small, else estimated.

`manage.py queue_status`, `/metrics` and the admin dashboard all read their counts here, so
they never disagree. A (status, priority) group the planner expects to hold at most
EXACT_COUNT_LIMIT rows is counted exactly, through the (status, priority) index and with the
scan capped at that many rows; a bigger group takes the planner's own estimate (EXPLAIN, helped
by the joint statistics on the pair, migration 0008) and says so. Counting a million-row group
exactly would cost more than every other figure on the dashboard together, and nobody acts on
the difference between 1,000,000 and 1,003,000 queued items.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from embedding_site.counting import capped_count, planner_rows
from queue_admin.models import QueueItem

# Above this many rows a group is shown as the planner's estimate rather than counted.
EXACT_COUNT_LIMIT = 100_000

GROUP = "SELECT 1 FROM embedding_queue WHERE status = %s AND priority = %s"


@dataclass(frozen=True)
class Count:
    value: int
    estimated: bool = False
    note: str = ""  # why it is an estimate, for a tooltip
    at_least: bool = False  # the true count is above `value` (a capped count hit its cap)

    def __add__(self, other: "Count") -> "Count":
        estimated = self.estimated or other.estimated
        return Count(
            self.value + other.value,
            estimated,
            "includes estimates" if estimated else "",
            self.at_least or other.at_least,
        )


ZERO = Count(0)


def count_rows(cursor, query: str, params, limit: int | None = None) -> Count:
    """Exact when the planner expects at most `limit` rows (and the capped count agrees); else
    the planner's estimate, marked as such."""
    limit = EXACT_COUNT_LIMIT if limit is None else limit
    estimate = planner_rows(cursor, query, params)
    if estimate <= limit:
        exact = capped_count(cursor, query, params, limit)
        if exact is not None:
            return Count(exact)
        # The statistics are out of date (a bulk load since the last ANALYZE): more than
        # `limit` rows, by how many nobody knows without the full count this avoids.
        return Count(limit, True, f"more than {limit:,}; the table statistics are out of date", at_least=True)
    return Count(estimate, True, f"planner's estimate (exact up to {limit:,})")


def by_status_and_priority() -> dict[str, dict[str, Count]]:
    """{status: {priority: Count}} for every status and priority, zeros included."""
    with connection.cursor() as cursor:
        return {
            status: {
                priority: count_rows(cursor, GROUP, [status, priority])
                for priority in QueueItem.Priority.values
            }
            for status in QueueItem.Status.values
        }


def total(counts: dict[str, Count]) -> Count:
    return sum(counts.values(), ZERO)


def database_now() -> datetime:
    # The database's clock, as for every other queue age: machines' clocks disagree.
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def oldest_pending_age_seconds(now: datetime) -> float | None:
    """Age of the oldest pending item by the database clock `now` (one probe of the partial
    index on pending items' created_at), or None when nothing is pending."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(created_at) FROM embedding_queue WHERE status = 'pending'")
        oldest = cursor.fetchone()[0]
    return round((now - oldest).total_seconds(), 3) if oldest else None
