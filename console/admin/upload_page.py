"""An uploads source's page for uploading: drop files, or .zip archives of them.

The request only stores the files: each is streamed as it arrives into a new upload batch on
disk (documents.sources.uploads), never held in memory, and refused at once when its name or
type is not one Sidecar reads or it passes the size limits. Complete, the batch is handed to
the workers and a sync is queued; the page returns at once and then shows the sync's progress
(it reloads itself while a sync runs or uploads wait). Parsing and zip extraction happen in the
worker, never here.
"""

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from console.admin.sync_report import last_sync_html
from documents.models import Source
from documents.parsing import supported_types
from documents.sources import uploads
from documents.sources.file_sync import SyncReport
from queue_admin import file_sources
from queue_admin.sources import SourceError

FIELD = "files"
RELOAD_SECONDS = 3


class SourceUploadHandler(FileUploadHandler):
    """Writes each file of the form's `files` field into `batch` as it arrives, refusing (and
    keeping nothing of) a file whose name or type is refused or that passes its size limit;
    past the whole upload's limit it stops reading the request."""

    def __init__(self, request, batch: uploads.Batch, bytes_allowed: int):
        super().__init__(request)
        self.batch = batch
        self.bytes_left = bytes_allowed
        self.taken: list[str] = []
        self.refused: list[tuple[str, str]] = []
        # Not `self.file`: Django closes a handler's `file` when it skips or stops an upload.
        self.dest = None

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != FIELD:
            raise SkipFile()
        try:
            self.name = file_sources.accept_upload(file_name)
        except uploads.UploadRefused as exc:
            self.refused.append((file_name, str(exc)))
            raise SkipFile() from None
        self.dest = self.batch.new_file(self.name)
        self.limit = file_sources.upload_limit(self.name)
        self.written = 0

    def receive_data_chunk(self, raw_data, start):
        self.written += len(raw_data)
        if self.written > self.bytes_left:
            self._drop(uploads.upload_too_large())
            raise StopUpload(connection_reset=False)  # Django reads and discards the rest
        if self.written > self.limit:
            self._drop(file_sources.stores.too_large_message(self.written, self.limit))
            raise SkipFile()
        self.dest.write(raw_data)

    def file_complete(self, file_size):
        if self.dest is None:
            return None
        self.dest.close()
        self.dest = None
        self.bytes_left -= file_size
        self.taken.append(self.name)
        return UploadedFile(file=None, name=self.name, size=file_size)

    def upload_interrupted(self):
        if self.dest is not None:
            self._drop("the upload was interrupted")

    def _drop(self, reason: str) -> None:
        self.dest.close()
        Path(self.dest.name).unlink(missing_ok=True)
        self.dest = None
        self.refused.append((self.name, reason))


class DiscardFiles(FileUploadHandler):
    """For a POST that is refused anyway: its files are read past, a chunk at a time, and kept
    nowhere."""

    def new_file(self, *args, **kwargs):
        raise SkipFile()

    def receive_data_chunk(self, raw_data, start):
        return None

    def file_complete(self, file_size):
        return None


class SourceUploadMixin:
    """Adds the upload page to SourceAdmin: /admin/documents/source/<id>/upload/."""

    def upload_urls(self):
        from django.urls import path

        return [
            path(
                "<path:object_id>/upload/",
                self.admin_site.admin_view(self.upload_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_upload",
            )
        ]

    # CSRF is checked inside, after the upload handler is installed: Django parses the body
    # for the CSRF token, and the handler must be in place before that to stream the files.
    @method_decorator(csrf_exempt)
    def upload_view(self, request, object_id):
        source = self.get_object(request, object_id)
        if (
            request.method != "POST"
            or source is None
            or source.kind != Source.Kind.UPLOADS
            or not self.has_change_permission(request, source)
        ):
            request.upload_handlers = [DiscardFiles(request)]  # refused below; nothing is stored
            return self._upload_page(request, object_id, source, None, None)
        with uploads.Batch(file_sources.upload_root(), source.pk) as batch:
            # Whatever stops short of handing the batch over (a CSRF refusal, which comes
            # after the files were read; an error) deletes it on the way out.
            handler = SourceUploadHandler(request, batch, file_sources.whole_upload_limit())
            request.upload_handlers = [handler]
            return self._upload_page(request, object_id, source, batch, handler)

    @method_decorator(csrf_protect)
    def _upload_page(self, request, object_id, source, batch, handler):
        if source is None or source.kind != Source.Kind.UPLOADS:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        may_upload = self.has_change_permission(request, source)
        if not may_upload and not self.has_view_permission(request, source):
            raise PermissionDenied
        if request.method != "POST":
            return self._render_upload_page(request, source, may_upload)
        if not may_upload:
            raise PermissionDenied
        return self._receive_upload(request, source, batch, handler)

    def _receive_upload(self, request, source, batch, handler):
        request.FILES  # reads the whole body through the handler  # noqa: B018
        for name, reason in handler.refused:
            messages.error(request, f"{name}: {reason}")
        if not handler.taken:
            if not handler.refused:
                messages.error(request, "Choose one or more files to upload.")
            return redirect(request.path)
        batch.hand_over()
        try:
            file_sources.schedule_sync(source)
        except SourceError as exc:  # detached meanwhile
            messages.error(request, str(exc))
            return redirect(request.path)
        count = len(handler.taken)
        messages.success(
            request,
            f"Uploaded {count:,} file{'s' * (count != 1)} to {source.name}. A worker reads them now; this page "
            "shows how far it got.",
        )
        return redirect(request.path)

    def _render_upload_page(self, request, source, may_upload):
        report = SyncReport.from_dict(source.last_sync)
        waiting = uploads.waiting(file_sources.upload_root(), source.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": source,
            "title": f"Upload files to {source.name}",
            "source": source,
            "may_upload": may_upload,
            "last_sync": last_sync_html(source),
            "waiting": waiting,
            "busy": waiting or report.running,
            "reload_seconds": RELOAD_SECONDS,
            "supported": supported_types(),
            "max_file": filesizeformat(settings.SOURCE_MAX_FILE_MB * 1024 * 1024),
            "max_upload": filesizeformat(file_sources.whole_upload_limit()),
            "documents": source.documents.count(),
        }
        return TemplateResponse(request, "admin/documents/source/upload.html", context)
