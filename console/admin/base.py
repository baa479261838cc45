from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from embedding_site.counting import EstimatedCountPaginator
from queue_admin import provider_batches
from queue_admin.backfill import duration_in_words


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


# What an action's message counts, in the reader's language and number.
NOUNS = {
    "item": lambda n: ngettext("%(count)s item", "%(count)s items", n),
    "worker": lambda n: ngettext("%(count)s worker", "%(count)s workers", n),
}
# Each action's "done" sentence, with %(things)s for the counted noun ("Retried 3 items.").
DONE = {
    "retried": gettext_lazy("Retried %(things)s."),
    "cancelled": gettext_lazy("Cancelled %(things)s."),
    "raised": gettext_lazy("Raised %(things)s to high priority."),
    "requeued": gettext_lazy("Requeued %(things)s."),
    "cleared": gettext_lazy("Cleared %(things)s."),
}


def report(
    model_admin,
    request,
    outcome,
    done: str,
    noun: str = "item",
    left_out: tuple[int, str] = (0, ""),
    link=None,
) -> None:
    """Tell the person what an action did: how many changed (`done`, a key of DONE), how many
    selected rows no longer exist (deleted meanwhile), and why the rest were left alone;
    `left_out`: how many selected rows the person chose to leave out, and why; `link`: where to
    see what it touched."""
    asked = len(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
    select_across = request.POST.get("select_across") == "1"

    def plural(n):
        return NOUNS[noun](n) % {"count": f"{n:,}"}

    level = messages.SUCCESS if outcome.changed else messages.WARNING
    text = DONE[done] % {"things": plural(outcome.changed)}
    if outcome.unchanged:
        text += " " + _("%(things)s left as they were: %(why)s.") % {
            "things": plural(outcome.unchanged),
            "why": outcome.unchanged_because,
        }
    if left_out[0]:
        text += " " + _("%(things)s left out: %(why)s.") % {"things": plural(left_out[0]), "why": left_out[1]}
    if not select_across and asked - left_out[0] > outcome.selected:
        gone = asked - left_out[0] - outcome.selected
        text += " " + _("%(things)s no longer exist (deleted meanwhile) and were skipped.") % {
            "things": plural(gone)
        }
        level = messages.WARNING
    model_admin.message_user(request, text, level)
    if link is not None and outcome.changed:
        model_admin.message_user(request, link, messages.INFO)


# An action's message links to the queue items it touched by their ids up to this many (a
# longer URL would outgrow what servers accept); past it, by the time of the action.
LINKED_AT_MOST = 100


def queue_items_link(*, since, item_ids=None, document_ids=None):
    """A link to the queue items an action touched, where their status shows as the workers
    go: by `item_ids` or `document_ids` when few, else every item changed `since` (a time)."""
    ids = [str(i) for i in (item_ids if item_ids is not None else document_ids or [])]
    if ids and len(ids) <= LINKED_AT_MOST:
        query = {"id__in" if item_ids is not None else "document__in": ",".join(ids)}
    else:
        query = {"updated_at__gte": since.isoformat()}
    url = reverse("admin:queue_admin_queueitem_changelist") + "?" + urlencode(query)
    return format_html(
        '<a href="{}" class="sidecar-touched">{}</a>{}',
        url,
        _("See them in the queue"),
        _(", with their status now."),
    )


# The backfill page's and the re-embed confirmation's choice of way (batch_api_choice.html).
VIA_WORKERS, VIA_BATCH_API = "workers", "batch_api"


def batch_api_choice(figures) -> dict | None:
    """The Batch API's side of the choice for an estimate (queue_admin.backfill.Estimate), when
    the Batch API is offered for that many documents; None otherwise."""
    if figures is None or not provider_batches.offered(figures.selection.documents):
        return None
    lately = provider_batches.recent_turnaround_seconds()
    return {
        "cost": provider_batches.batch_cost(figures.cost),
        "window": provider_batches.window_in_words(),
        "lately": None if lately is None else duration_in_words(lately),
    }


def report_sent_to_batch_api(model_admin, request, batches) -> None:
    """Say how many documents went to the provider's Batch API, and where to follow them."""
    claimed = sum(batch.documents for batch in batches)
    model_admin.message_user(
        request,
        format_html(
            '{} <a href="{}">{}</a>',
            ngettext(
                "%(count)s document goes to the provider's Batch API; it is written when the provider answers "
                "(within %(window)s).",
                "%(count)s documents go to the provider's Batch API; they are written when the provider answers "
                "(within %(window)s).",
                claimed,
            )
            % {"count": f"{claimed:,}", "window": provider_batches.window_in_words()},
            reverse("admin:queue_admin_providerbatch_changelist"),
            _("Follow them under Provider batches."),
        ),
        messages.SUCCESS,
    )
