"""The documents list's "Backfill missing/stale" page: the estimate first, then the queueing.

A GET shows what a backfill would take (documents, tokens, time at the recent rate, cost); its
form POSTs the choice back, which queues through `queue_admin.backfill.enqueue` — the same
set-based statement as `manage.py backfill`. A selection big enough (the setting
`batch_api_min_documents`), with the openai provider, may instead go through the provider's
Batch API (`queue_admin.provider_batches`): the page shows time and cost both ways.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from console.admin.base import VIA_BATCH_API, batch_api_choice, report_sent_to_batch_api
from documents.priority import in_words
from queue_admin import backfill, provider_batches
from queue_admin.models import QueueItem

KINDS = [
    (backfill.MISSING_OR_STALE, gettext_lazy("Missing and stale (the usual choice)")),
    (backfill.MISSING, gettext_lazy("Missing only: never embedded")),
    (backfill.STALE, gettext_lazy("Stale only: embedded from an earlier text or by another model")),
]

# The kinds as a message names them: "Queued 4 documents (missing or stale)".
KIND_WORDS = {
    backfill.MISSING_OR_STALE: gettext_lazy("missing or stale"),
    backfill.MISSING: gettext_lazy("missing"),
    backfill.STALE: gettext_lazy("stale"),
}


class BackfillForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Documents"),
        choices=KINDS,
        initial=backfill.MISSING_OR_STALE,
        widget=forms.RadioSelect,
    )
    priority = forms.ChoiceField(
        label=gettext_lazy("Priority"),
        choices=QueueItem.Priority.choices,
        initial=QueueItem.Priority.LOW,
        help_text=gettext_lazy("Low lets edits and re-embeds (medium and high) go first."),
    )
    include_failed = forms.BooleanField(
        label=gettext_lazy("Include failed"),
        required=False,
        help_text=gettext_lazy(
            "Also documents whose last attempt failed or was cancelled by a person. Left out "
            "by default: unchanged, they would fail again."
        ),
    )


def respond(model_admin, request):
    """Steps: check the permission (403); on POST, validate and queue, then go back to the list
    with a message; otherwise (or when invalid) show the form with the estimate of its choice."""
    if not model_admin.has_reembed_permission(request):
        raise PermissionDenied
    model = model_admin.embedding_model()
    if request.method == "POST":
        form = BackfillForm(request.POST)
        if form.is_valid():
            kind, priority = form.cleaned_data["kind"], form.cleaned_data["priority"]
            include_held = form.cleaned_data["include_failed"]
            if request.POST.get("via") == VIA_BATCH_API:
                return _through_batch_api(model_admin, request, kind, priority, include_held)
            queued = backfill.enqueue(kind, model, priority=priority, include_held=include_held)
            _report(model_admin, request, queued, kind, priority)
            return redirect("admin:documents_sourcedocument_changelist")
    else:
        form = BackfillForm(request.GET or None)
    choice = _choice(form)
    figures = (
        backfill.estimate(backfill.count(choice["kind"], model, include_held=bool(choice["include_failed"])))
        if choice
        else None
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Backfill missing and stale embeddings"),
        "opts": model_admin.opts,
        "form": form,
        "choice": choice,
        "priority_label": in_words(choice["priority"]) if choice else "",
        "figures": figures,
        "batch_api": batch_api_choice(figures),
        "model": model,
    }
    return TemplateResponse(request, "admin/documents/sourcedocument/backfill.html", context)


def _through_batch_api(model_admin, request, kind, priority, include_held):
    count = backfill.count(kind, model_admin.embedding_model(), include_held=include_held).documents
    if not provider_batches.offered(count):
        model_admin.message_user(
            request,
            _(
                "The Batch API is not offered for this backfill (too few documents, or another provider); nothing was sent."
            ),
            messages.ERROR,
        )
        return redirect("admin:documents_sourcedocument_backfill")
    try:
        batches = provider_batches.start(
            kind, priority=priority, include_held=include_held, started_by=request.user.get_username()
        )
    except provider_batches.NotAvailable as error:
        model_admin.message_user(request, _("Nothing was sent: %(why)s.") % {"why": error}, messages.ERROR)
        return redirect("admin:documents_sourcedocument_backfill")
    report_sent_to_batch_api(model_admin, request, batches)
    return redirect("admin:documents_sourcedocument_changelist")


def _choice(form) -> dict | None:
    """What to estimate and offer to queue: the defaults on a fresh page, the submitted choice
    when valid, nothing when invalid (the form shows its errors instead)."""
    if not form.is_bound:
        return {name: field.initial for name, field in form.fields.items()}
    return form.cleaned_data if form.is_valid() else None


def _report(model_admin, request, queued: int, kind: str, priority: str) -> None:
    if queued:
        model_admin.message_user(
            request,
            ngettext(
                "Queued %(count)s document (%(kind)s) at %(priority)s priority. Workers embed it in the background.",
                "Queued %(count)s documents (%(kind)s) at %(priority)s priority. Workers embed them in the background.",
                queued,
            )
            % {"count": f"{queued:,}", "kind": KIND_WORDS[kind], "priority": in_words(priority)},
            messages.SUCCESS,
        )
    else:
        model_admin.message_user(
            request,
            _(
                "Nothing was queued: every document with text has a current embedding, or is already queued "
                "at this priority or higher."
            ),
            messages.INFO,
        )
