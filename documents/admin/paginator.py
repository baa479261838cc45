from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """A paginator that counts at most `cap` + 1 rows.

    The admin counts the (filtered) list on every page view to number the pages. On a table of
    millions that COUNT(*) costs more than the page itself, and a filtered count (say "stale",
    an anti-join per row) costs seconds. `SELECT count(*) FROM (... LIMIT cap + 1)` stops early:
    the list shows "more than 10,000" and links pages up to there; search or filter to go further.
    """

    cap = 10_000

    @cached_property
    def count(self):
        # Only the ids: the list's computed columns (statuses, chunk counts) are not needed to count.
        return self.object_list.order_by().values("pk")[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap
