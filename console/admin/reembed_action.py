"""The documents list's "Re-embed selected" action: a confirmation page, then the queueing.

Django runs an action twice here. First from the list: we answer the confirmation page
(how many documents, estimated tokens, time and cost). Its form posts the same selection back
without the list's "index" field, which Django routes to the same action again; the
CONFIRM field tells the two apart.
"""

from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from console.admin.base import (
    LINKED_AT_MOST,
    VIA_BATCH_API,
    batch_api_choice,
    queue_items_link,
    report_sent_to_batch_api,
)
from documents.priority import in_words
from queue_admin import backfill, provider_batches, reembed
from queue_admin.models import QueueItem

CONFIRM = "confirm_reembed"
CONFIRMED_COUNT = "confirmed_documents"


def respond(model_admin, request, queryset):
    """The confirmation page, or — once confirmed — queue and return None (back to the list)."""
    if request.POST.get(CONFIRM) == "yes":
        _queue(model_admin, request, queryset)
        return None
    chosen = reembed.count(queryset)
    figures = backfill.estimate(backfill.Selection(chosen.documents, chosen.estimated_tokens))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Re-embed documents?"),
        "opts": model_admin.opts,
        "chosen": chosen,
        "figures": figures,
        "batch_api": batch_api_choice(figures),
        "model": model_admin.embedding_model(),
        "priority": in_words(QueueItem.Priority.HIGH),
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across") == "1",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "confirm_field": CONFIRM,
        "confirmed_count_field": CONFIRMED_COUNT,
        "confirmed_count": chosen.documents + chosen.blank,
    }
    return TemplateResponse(request, "admin/documents/sourcedocument/reembed_confirmation.html", context)


def _queue(model_admin, request, queryset) -> None:
    """Queue what is still there and say what happened to the rest: documents deleted between
    the confirmation and the submit are not found, and are counted as skipped.

    With "select all", the confirmation promised at most the number it showed: if more
    documents match now (a tampered form, or documents added to the filter's match since),
    nothing is queued and the person is asked to look again."""
    confirmed = _confirmed_count(request)
    if _across(request):
        matching = reembed.count(queryset)
        if matching.documents + matching.blank > confirmed:
            model_admin.message_user(
                request,
                _(
                    "Nothing was queued: %(documents)s match now, more than the %(confirmed)s you "
                    "confirmed. Check the list and choose the action again."
                )
                % {
                    "documents": _documents(matching.documents + matching.blank),
                    "confirmed": f"{confirmed:,}",
                },
                messages.ERROR,
            )
            return
    if request.POST.get("via") == VIA_BATCH_API:
        _through_batch_api(model_admin, request, queryset)
        return
    since = timezone.now()
    document_ids = list(queryset.values_list("pk", flat=True)[: LINKED_AT_MOST + 1])
    result = reembed.reembed(queryset)
    gone = max(0, confirmed - result.queued - result.blank)
    if result.queued:
        link = queue_items_link(
            since=since, document_ids=document_ids if len(document_ids) <= LINKED_AT_MOST else None
        )
        model_admin.message_user(
            request,
            _("Queued %(documents)s for re-embedding at high priority, even if unchanged.")
            % {"documents": _documents(result.queued)},
            messages.SUCCESS,
        )
        model_admin.message_user(request, link, messages.INFO)
    if result.blank:
        model_admin.message_user(
            request,
            _("Skipped %(documents)s with no text: nothing to embed.")
            % {"documents": _documents(result.blank)},
            messages.WARNING,
        )
    if gone:
        model_admin.message_user(
            request,
            (
                _(
                    "Skipped %(gone)s of the %(documents)s you confirmed: deleted since (or no longer matching the list's filter)."
                )
                if _across(request)
                else _("Skipped %(gone)s of the %(documents)s you confirmed: deleted since.")
            )
            % {"gone": f"{gone:,}", "documents": _documents(confirmed)},
            messages.WARNING,
        )
    if not (result.queued or result.blank or gone):
        model_admin.message_user(
            request, _("Nothing was queued: no documents were selected."), messages.WARNING
        )


def _through_batch_api(model_admin, request, queryset) -> None:
    chosen = reembed.count(queryset)
    if not provider_batches.offered(chosen.documents):
        model_admin.message_user(
            request,
            _(
                "The Batch API is not offered for this re-embed (too few documents, or another provider); nothing was sent."
            ),
            messages.ERROR,
        )
        return
    try:
        batches = provider_batches.start_reembed(queryset, started_by=request.user.get_username())
    except provider_batches.NotAvailable as error:
        model_admin.message_user(request, _("Nothing was sent: %(why)s.") % {"why": error}, messages.ERROR)
        return
    report_sent_to_batch_api(model_admin, request, batches)


def _across(request) -> bool:
    return request.POST.get("select_across") == "1"


def _confirmed_count(request) -> int:
    """How many documents the person confirmed: the ticked rows, or, for "select all", the
    count the confirmation page showed (only ever used to word a message)."""
    if not _across(request):
        return len(set(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)))
    try:
        return max(0, int(request.POST.get(CONFIRMED_COUNT, "0")))
    except ValueError:
        return 0


def _documents(count: int) -> str:
    return ngettext("%(count)s document", "%(count)s documents", count) % {"count": f"{count:,}"}
