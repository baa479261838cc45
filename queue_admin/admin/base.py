import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

# Below this many rows a list's count is exact; above, the planner's estimate (shown with "≈").
EXACT_COUNT_UP_TO = 10_000


def planner_rows(queryset) -> int:
    """PostgreSQL's estimate of how many rows `queryset` returns (EXPLAIN, nothing read)."""
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Exact counts for small results, estimates for big ones.

    Django's change list counts the filtered rows on every page view; on a queue of a million
    rows that `COUNT(*)` is most of the page's time. Counting stops after EXACT_COUNT_UP_TO + 1
    rows (cheap, and exact for every small filter); only past that does the planner's
    estimate stand in, and `estimated` tells the template to say so.
    """

    estimated = False

    @cached_property
    def count(self):
        queryset = self.object_list
        capped = queryset.order_by()[: EXACT_COUNT_UP_TO + 1].count()
        if capped <= EXACT_COUNT_UP_TO:
            return capped
        self.estimated = True
        return max(planner_rows(queryset), EXACT_COUNT_UP_TO + 1)


class BigTableAdmin(admin.ModelAdmin):
    """A list over a table that may hold millions of rows: estimated counts, no facets."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # no second COUNT(*) of the unfiltered table
    show_facets = admin.ShowFacets.NEVER  # facets count every filter choice on every view


class ReadOnlyAdmin(BigTableAdmin):
    """Rows only the machine writes: no add, no edit form."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def report(model_admin, request, outcome, done: str, noun: str = "item") -> None:
    """Tell the person what an action did: how many changed, how many selected rows no longer
    exist (deleted meanwhile), and why the rest were left alone."""
    asked = len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
    select_across = request.POST.get("select_across") == "1"

    def plural(n):
        return f"{n:,} {noun}{'' if n == 1 else 's'}"

    level = messages.SUCCESS if outcome.changed else messages.WARNING
    text = f"{done.capitalize()} {plural(outcome.changed)}."
    if outcome.unchanged:
        text += f" {plural(outcome.unchanged)} left as they were: {outcome.unchanged_because}."
    if not select_across and asked > outcome.selected:
        gone = asked - outcome.selected
        text += f" {plural(gone)} no longer exist (deleted meanwhile) and were skipped."
        level = messages.WARNING
    model_admin.message_user(request, text, level)
