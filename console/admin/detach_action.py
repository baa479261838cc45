"""Detaching sources: a confirmation page with what would be removed, then `sources.detach`.

The "Detach selected sources" action (and a source's "Delete" link, `SourceAdmin.delete_view`)
answers the confirmation: for each source its documents, embeddings, queued items and the items
held by workers now (`sources.detach_counts`), and that the table itself is left as it was. Its
form posts the selection back to the action with CONFIRM set, as "Re-embed selected" does.
"""

from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse

from documents.sources.tables import TableSourceError
from queue_admin import sources

CONFIRM = "confirm_detach"


def respond(model_admin, request, queryset):
    """The confirmation page, or — once confirmed — detach and return None (back to the list)."""
    if request.POST.get(CONFIRM) == "yes":
        _detach(model_admin, request, queryset)
        return None
    return confirmation(model_admin, request, list(queryset))


def confirmation(model_admin, request, chosen: list):
    attached = [source for source in chosen if not source.is_builtin]
    rows = [{"source": source, "counts": sources.detach_counts(source)} for source in attached]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Detach sources?" if len(rows) != 1 else f"Detach {rows[0]['source'].name}?",
        "opts": model_admin.opts,
        "rows": rows,
        "builtin": [source for source in chosen if source.is_builtin],
        "action_url": reverse("admin:documents_source_changelist"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "confirm_field": CONFIRM,
    }
    return TemplateResponse(request, "admin/documents/source/detach_confirmation.html", context)


def _detach(model_admin, request, queryset) -> None:
    for source in queryset:
        if source.is_builtin:
            model_admin.message_user(
                request,
                f"Not detached: {source.name} is Sidecar's own documents, not an attached source.",
                messages.WARNING,
            )
            continue
        what = source.options.get("schema", "") + "." + source.options.get("table", "")
        documents = sources.detach_counts(source).documents
        now = documents <= sources.DETACH_NOW_LIMIT
        try:
            removed = sources.detach(source, now=now)
        except (sources.SourceError, TableSourceError) as exc:
            model_admin.message_user(request, f"Could not detach {source.name}: {exc}", messages.ERROR)
            continue
        if not now:
            model_admin.message_user(
                request,
                f"Detaching {source.name}: its triggers are removed and the table {what} is as it was; a worker "
                f"removes its {documents:,} documents with their embeddings now (the source shows 'detaching').",
                messages.SUCCESS,
            )
            continue
        model_admin.message_user(
            request,
            f"Detached {source.name}: {removed:,} document{'' if removed == 1 else 's'} removed with their "
            f"embeddings and queue items. The table {what} is as it was.",
            messages.SUCCESS,
        )
