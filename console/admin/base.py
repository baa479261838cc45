from django.contrib import admin, messages
from django.contrib.admin import helpers

from embedding_site.counting import EstimatedCountPaginator


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


def report(
    model_admin, request, outcome, done: str, noun: str = "item", left_out: tuple[int, str] = (0, "")
) -> None:
    """Tell the person what an action did: how many changed, how many selected rows no longer
    exist (deleted meanwhile), and why the rest were left alone; `left_out`: how many selected
    rows the person chose to leave out, and why."""
    asked = len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
    select_across = request.POST.get("select_across") == "1"

    def plural(n):
        return f"{n:,} {noun}{'' if n == 1 else 's'}"

    level = messages.SUCCESS if outcome.changed else messages.WARNING
    text = f"{done.capitalize()} {plural(outcome.changed)}."
    if outcome.unchanged:
        text += f" {plural(outcome.unchanged)} left as they were: {outcome.unchanged_because}."
    if left_out[0]:
        text += f" {plural(left_out[0])} left out: {left_out[1]}."
    if not select_across and asked - left_out[0] > outcome.selected:
        gone = asked - left_out[0] - outcome.selected
        text += f" {plural(gone)} no longer exist (deleted meanwhile) and were skipped."
        level = messages.WARNING
    model_admin.message_user(request, text, level)
