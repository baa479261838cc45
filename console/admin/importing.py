"""Import documents from the documents list: upload → preview (with every problem) → confirm.

The work is done by documents/importing.py; these views upload, show and confirm. Importing
needs the "add document" permission, and a file that updates existing documents also "change
document"; anyone else gets 403 (anonymous visitors are sent to log in by the admin site).
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from console.admin import import_uploads
from console.admin.base import queue_items_link
from documents import importing

FORMAT_CHOICES = [
    ("", "From the file name (.csv, .jsonl, .ndjson; .gz allowed)"),
    ("csv", "CSV"),
    ("jsonl", "JSON Lines (one JSON object per line)"),
]


class ImportUploadForm(forms.Form):
    # Before the file in the form: an upload stopped for its size keeps the fields sent before it.
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    file = forms.FileField(required=False, help_text=gettext_lazy("A CSV or JSON Lines file, UTF-8."))

    def __init__(self, *args, too_large=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.too_large = too_large

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if self.too_large:
            self.add_error(
                "file",
                f"The file is larger than the {filesizeformat(settings.DOCUMENT_IMPORT_MAX_BYTES)} limit.",
            )
        elif not upload:
            self.add_error("file", "Choose a file to import.")
        else:
            try:
                cleaned["format"] = importing.detect_format(upload.name, cleaned.get("format") or None)
            except importing.UnknownFormat as exc:
                self.add_error("format", str(exc))
        return cleaned


class DocumentImportMixin:
    """Adds an Import page to SourceDocumentAdmin (the "Import" button on its list)."""

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("import/", self.admin_site.admin_view(self.import_upload_view), name=f"{prefix}_import"),
            path(
                "import/<str:token>/",
                self.admin_site.admin_view(self.import_preview_view),
                name=f"{prefix}_import_preview",
            ),
        ] + super().get_urls()

    def has_import_permission(self, request) -> bool:
        return self.has_add_permission(request)

    # --- Upload ---------------------------------------------------------------------------

    # CSRF is checked inside, after the upload handler is installed: Django parses the body
    # for the CSRF token, and the handler must be in place before that to stream the file
    # to disk and enforce the size limit.
    @method_decorator(csrf_exempt)
    def import_upload_view(self, request):
        if not self.has_import_permission(request):
            raise PermissionDenied
        handler = import_uploads.ImportUploadHandler(request, settings.DOCUMENT_IMPORT_MAX_BYTES)
        request.upload_handlers = [handler]
        return self._import_upload(request, handler)

    @method_decorator(csrf_protect)
    def _import_upload(self, request, handler):
        if request.method != "POST":
            return self._render_upload(request, ImportUploadForm())
        form = ImportUploadForm(request.POST, request.FILES, too_large=handler.too_large)
        if not form.is_valid():
            handler.discard()
            return self._render_upload(request, form)
        import_uploads.remove_abandoned_uploads()
        token = import_uploads.remember(
            request, handler.path, form.cleaned_data["file"].name, form.cleaned_data["format"]
        )
        return redirect(self._import_url("import_preview", token))

    def _render_upload(self, request, form):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": gettext_lazy("Import documents"),
            "form": form,
            "max_size": filesizeformat(settings.DOCUMENT_IMPORT_MAX_BYTES),
            "fields": importing.FIELDS,
        }
        return TemplateResponse(request, "admin/documents/sourcedocument/import_upload.html", context)

    # --- Preview, confirm, cancel -----------------------------------------------------------

    def import_preview_view(self, request, token):
        if not self.has_import_permission(request):
            raise PermissionDenied
        upload = import_uploads.recall(request, token)
        if upload is None:
            messages.error(
                request,
                _(
                    "That import is unknown or has expired (it belongs to no upload of yours). Upload the file again."
                ),
            )
            return redirect(self._import_url("import"))
        if request.method == "POST" and "cancel" in request.POST:
            import_uploads.forget(request, token)
            messages.info(
                request,
                _("Import of %(name)s cancelled; the uploaded file was deleted.") % {"name": upload["name"]},
            )
            return redirect(self._import_url("changelist"))

        if request.method == "POST" and "confirm" in request.POST:
            return self._import(request, token, upload)

        report = importing.check_file(upload["path"], upload["format"])
        refusal = self._update_refusal(request, report)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import %(name)s") % {"name": upload["name"]},
            "upload": upload,
            "report": report,
            "refusal": refusal,
            "hidden_problems": report.problem_count - len(report.problems),
            "can_import": report.ok and not refusal,
        }
        return TemplateResponse(request, "admin/documents/sourcedocument/import_preview.html", context)

    def _update_refusal(self, request, report) -> str | None:
        if report.updates and not self.has_change_permission(request):
            return _(
                "%(count)s row(s) have the id of an existing document, and you may add documents "
                "but not change them. Remove those rows or their ids, or ask for the change permission."
            ) % {"count": report.updates}
        return None

    def _import(self, request, token, upload):
        claimed = import_uploads.claim(upload)
        if claimed is None:
            messages.error(
                request, _("This file is already being imported (or was); see the documents list.")
            )
            return redirect(self._import_url("changelist"))
        since = timezone.now()
        try:
            # No second check first: write_file refuses a bad row (or, for someone who may not
            # change documents, an update) as it meets it, rolling everything back, and one pass
            # keeps a big import inside the web server's request timeout.
            result = importing.write_file(
                claimed, upload["format"], allow_updates=self.has_change_permission(request)
            )
        except importing.ImportRefused as exc:
            claimed.rename(upload["path"])  # give it back, so the preview can show what changed
            messages.error(request, str(exc))
            return redirect(self._import_url("import_preview", token))
        claimed.unlink(missing_ok=True)
        import_uploads.forget(request, token)
        imported = result.created + result.updated
        queued = (
            _("they are queued for embedding")
            if result.queued == imported
            else _("%(queued)s of them are queued for embedding (the others' text was already embedded)")
            % {"queued": result.queued}
        )
        messages.success(
            request,
            _("Imported %(imported)s documents (%(created)s new, %(updated)s updated); %(queued)s.")
            % {"imported": imported, "created": result.created, "updated": result.updated, "queued": queued},
        )
        if result.queued:
            # The import's rows were queued by the triggers as it wrote them: every queue item
            # changed since it started (another writer's items too, if any wrote meanwhile).
            messages.info(request, queue_items_link(since=since))
        return redirect(self._import_url("changelist"))

    def _import_url(self, name, *args):
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args
        )
