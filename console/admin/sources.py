"""Sources: where documents come from. The list shows each source's figures (`source_figures`)
and offers pause, resume, resync, backfill and detach; "Attach a table" and a table source's
change page are the mapping form (`source_pages.py`); "Attach files" and a file source's change
page are `file_source_pages.py`; detaching goes through a confirmation (`detach_action.py`).
Every change is made by the services in `queue_admin.sources` and `queue_admin.file_sources`.

Sidecar's own documents are the built-in source: it can be paused, resumed and backfilled, but
not edited or detached.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from console.admin import detach_action, file_source_pages, source_pages
from console.admin.sync_report import last_sync_html
from console.admin.upload_page import SourceUploadMixin
from documents.models import Source
from documents.providers.factory import get_provider
from documents.sources.tables import TableSourceError
from queue_admin import backfill, file_sources, source_figures, sources

SERVICE_ERRORS = (sources.SourceError, TableSourceError)


class SourceChangeList(ChangeList):
    """Each row gets its figures (documents, freshness, queued), read for every source at once."""

    def get_results(self, request):
        super().get_results(request)
        figures = {row.id: row for row in source_figures.for_all(self.model_admin.embedding_model())}
        for source in self.result_list:
            source.figures = figures.get(source.pk)
        self.counted_at = next((row.counted_at for row in figures.values() if row.counted_at), None)


@admin.register(Source)
class SourceAdmin(SourceUploadMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "kind_label",
        "reads",
        "state_column",
        "running",
        "default_priority",
        "documents",
        "fresh",
        "stale",
        "missing",
        "failed",
        "queued",
        "last_change",
    )
    list_display_links = ("name",)
    actions = ["pause_sources", "resume_sources", "resync_sources", "backfill_sources", "detach_sources"]
    change_list_template = "admin/documents/source/change_list.html"
    show_facets = admin.ShowFacets.NEVER

    def embedding_model(self) -> str:
        """The configured provider's model id: fresh / stale / missing are about it."""
        return get_provider().model_id

    # Permissions: add_source attaches, change_source runs the actions and edits a table's
    # mapping, delete_source detaches. The built-in source is neither edited nor detached.

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_builtin:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_builtin:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "Detach selected sources" instead, with its counts
        return actions

    # The pages.

    def get_urls(self):
        return self.upload_urls() + super().get_urls()

    def get_changelist(self, request, **kwargs):
        return SourceChangeList

    def changelist_view(self, request, extra_context=None):
        # A table dropped or altered since the last look shows as broken, with the reason.
        sources.check_tables()
        return super().changelist_view(request, extra_context)

    def add_view(self, request, form_url="", extra_context=None):
        if "kind" in request.GET:  # "Attach files": ?kind=files, then the kind chosen
            return file_source_pages.attach(self, request)
        return source_pages.attach(self, request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        source = self.get_object(request, unquote(object_id))
        if source is not None and self.has_change_permission(request, source):
            if source.kind == Source.Kind.TABLE:
                return source_pages.edit(self, request, source)
            if source.kind in file_source_pages.KINDS:
                return file_source_pages.edit(self, request, source)
        # The built-in source, or someone who may only look: Django's read-only page.
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        """The change page's "Delete" link: the detach confirmation for this one source."""
        source = self.get_object(request, unquote(object_id))
        if source is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_delete_permission(request, source):
            raise PermissionDenied
        return detach_action.confirmation(self, request, [source])

    def get_fields(self, request, obj=None):
        if obj is not None and obj.is_builtin:
            return ("name", "kind_label", "about", "default_priority", "running", "state_column")
        if obj is not None and obj.is_files:
            return (
                "name", "kind_label", "reads", "default_priority", "running", "state_column", "sync_every",
                "last_sync_column", "last_synced_at", "created_by", "created_at",
            )  # fmt: skip
        return (
            "name", "kind_label", "reads", "template", "title_column", "metadata_columns", "row_filter",
            "default_priority", "running", "state_column", "last_synced_at", "created_by", "created_at",
        )  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    # The list's columns (the change page's read-only fields too).

    @admin.display(description=gettext_lazy("kind"))
    def kind_label(self, obj):
        return "built-in" if obj.is_builtin else obj.get_kind_display().lower()

    @admin.display(description=gettext_lazy("reads"))
    def reads(self, obj):
        if obj.is_builtin:
            return "Sidecar's own documents"
        if obj.kind == Source.Kind.UPLOADS:
            return format_html(
                '{} — <a href="{}" class="sidecar-upload-link">upload files</a>',
                file_sources.describe(obj),
                reverse("admin:documents_source_upload", args=[obj.pk]),
            )
        if obj.is_files:
            return file_sources.describe(obj)
        return format_html(
            "<code>{}.{}</code>", obj.options.get("schema", "?"), obj.options.get("table", "?")
        )

    @admin.display(description="")
    def about(self, obj):
        return (
            "Sidecar's own documents (written into source_documents by the admin, imports, the ORM or SQL). "
            "This source cannot be edited or detached; pause, resume and backfill it from the list."
        )

    @admin.display(description=gettext_lazy("template"))
    def template(self, obj):
        return format_html("<pre>{}</pre>", obj.options.get("template", ""))

    @admin.display(description=gettext_lazy("title column"))
    def title_column(self, obj):
        return obj.options.get("title_column") or "—"

    @admin.display(description=gettext_lazy("metadata columns"))
    def metadata_columns(self, obj):
        return ", ".join(obj.options.get("metadata_columns") or []) or "—"

    @admin.display(description=gettext_lazy("row filter"))
    def row_filter(self, obj):
        where = obj.options.get("where")
        return format_html("<code>{}</code>", where) if where else "— (every row)"

    @admin.display(description=gettext_lazy("state"))
    def state_column(self, obj):
        figures = getattr(obj, "figures", None)
        if obj.state == Source.State.BROKEN:
            return format_html(
                '<span class="sidecar-source-state broken">broken</span>'
                '<div class="sidecar-source-reason">{}</div>',
                obj.state_reason,
            )
        if obj.state == Source.State.ATTACHING:
            if obj.rows_total is None:
                return mark_safe(
                    '<span class="sidecar-source-state attaching">attaching</span>'
                    '<div class="help">waiting for a worker to copy the rows</div>'
                )
            percent = figures.progress_percent if figures else None
            if percent is None:
                percent = min(100, round(100 * obj.rows_done / obj.rows_total)) if obj.rows_total else 100
            return format_html(
                '<span class="sidecar-source-state attaching">attaching</span> '
                '<progress max="100" value="{}"></progress> {}%'
                '<div class="help">{} of {} rows copied</div>',
                percent,
                percent,
                f"{obj.rows_done:,}",
                f"{obj.rows_total:,}",
            )
        state = format_html('<span class="sidecar-source-state {}">{}</span>', obj.state, obj.state)
        if obj.is_files:  # "not synced yet" until a worker got to it
            return state + last_sync_html(obj, failures=False)
        return state

    @admin.display(description=gettext_lazy("sync every"))
    def sync_every(self, obj):
        minutes = obj.options.get("sync_minutes")
        return (
            f"{minutes} minutes"
            if minutes
            else "on demand only (the Resync action, or `manage.py source sync`)"
        )

    @admin.display(description=gettext_lazy("last sync"))
    def last_sync_column(self, obj):
        return last_sync_html(obj)

    @admin.display(description=gettext_lazy("running"))
    def running(self, obj):
        if obj.enabled:
            return "running"
        return format_html(
            '<span class="sidecar-source-paused" title=gettext_lazy("{}")>paused</span>', PAUSED
        )

    def _figure(self, obj, name):
        figures = getattr(obj, "figures", None)
        return "—" if figures is None else f"{getattr(figures, name):,}"

    @admin.display(description=gettext_lazy("documents"))
    def documents(self, obj):
        return format_html(
            '<a href="{}?source={}">{}</a>',
            reverse("admin:documents_sourcedocument_changelist"),
            obj.pk,
            self._figure(obj, "rows"),
        )

    @admin.display(description=gettext_lazy("fresh"))
    def fresh(self, obj):
        return self._figure(obj, "fresh")

    @admin.display(description=gettext_lazy("stale"))
    def stale(self, obj):
        return self._figure(obj, "stale")

    @admin.display(description=gettext_lazy("missing"))
    def missing(self, obj):
        return self._figure(obj, "missing")

    @admin.display(description=gettext_lazy("failed"))
    def failed(self, obj):
        return self._figure(obj, "failed")

    @admin.display(description=gettext_lazy("queued"))
    def queued(self, obj):
        return self._figure(obj, "queued")

    @admin.display(description=gettext_lazy("last change"), empty_value="—")
    def last_change(self, obj):
        figures = getattr(obj, "figures", None)
        return figures.last_change if figures else None

    # The actions: one service call per source, and a message for each that says what it did.

    @admin.action(description=gettext_lazy("Pause selected sources"), permissions=["change"])
    def pause_sources(self, request, queryset):
        for source in queryset:
            taken = sources.pause(source)
            self.message_user(
                request,
                f"Paused {source.name}: {_items(taken)} taken off the queue; nothing more of it is queued "
                "until it is resumed. Its documents stay in step with the source.",
                messages.SUCCESS,
            )

    @admin.action(description=gettext_lazy("Resume selected sources"), permissions=["change"])
    def resume_sources(self, request, queryset):
        for source in queryset:
            queued = sources.resume(source, self.embedding_model())
            self.message_user(
                request,
                f"Resumed {source.name}: {_documents(queued)} it missed queued at {source.default_priority} "
                "priority.",
                messages.SUCCESS,
            )

    @admin.action(
        description=gettext_lazy("Resync selected sources (re-render rows, sync files)"),
        permissions=["change"],
    )
    def resync_sources(self, request, queryset):
        for source in queryset:
            try:
                if source.is_files:
                    file_sources.schedule_sync(source)
                    self.message_user(
                        request,
                        f"Syncing {source.name}: a worker reads its new and changed files now (this page shows "
                        "the figures as they grow; reload it).",
                        messages.SUCCESS,
                    )
                    continue
                sources.resync(source, copy_now=False)
            except SERVICE_ERRORS as exc:
                self.message_user(request, f"Could not resync {source.name}: {exc}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"Resyncing {source.name}: a worker re-renders every row in the background (the list shows "
                "its progress); only documents whose text changed are embedded again.",
                messages.SUCCESS,
            )

    @admin.action(
        description=gettext_lazy("Backfill selected sources (queue missing and stale)"),
        permissions=["change"],
    )
    def backfill_sources(self, request, queryset):
        model = self.embedding_model()
        for source in queryset:
            if not source.enabled:
                self.message_user(
                    request,
                    f"Nothing of {source.name} was queued: it is paused. Resume it to queue its documents.",
                    messages.WARNING,
                )
                continue
            queued = backfill.enqueue(
                backfill.MISSING_OR_STALE, model, priority=source.default_priority, source_id=source.pk
            )
            self.message_user(
                request,
                f"Backfill of {source.name}: {_documents(queued)} queued at {source.default_priority} priority."
                if queued
                else f"Backfill of {source.name}: nothing to queue; every document with text is embedded "
                "or already queued.",
                messages.SUCCESS if queued else messages.INFO,
            )

    @admin.action(description=gettext_lazy("Detach selected sources…"), permissions=["delete"])
    def detach_sources(self, request, queryset):
        return detach_action.respond(self, request, queryset)


PAUSED = "Nothing of it is queued for embedding until it is resumed; its documents stay in step."


def _documents(count: int) -> str:
    return f"{count:,} document" + ("" if count == 1 else "s")


def _items(count: int) -> str:
    return f"{count:,} queued item" + ("" if count == 1 else "s")
