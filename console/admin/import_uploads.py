"""Uploaded import files between the preview and the confirmation.

An upload is streamed straight to a private temporary file (random name, mode 0600, created
with O_EXCL by mkstemp), never held in memory, and refused past DOCUMENT_IMPORT_MAX_BYTES.
The browser only ever sees a random token; the file's path lives in the uploader's session,
so another user (another session) cannot reach it, and a tampered token finds nothing.
The file is deleted after the import, on cancel, and (if abandoned) a day later.
"""

import os
import secrets
import tempfile
import time
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload

FILE_PREFIX = "sidecar-import-"
SESSION_KEY = "sidecar_document_imports"
ABANDONED_AFTER_SECONDS = 24 * 3600


def upload_dir() -> Path:
    return Path(tempfile.gettempdir())


class ImportUploadHandler(FileUploadHandler):
    """Writes the form's `file` field to a private temporary file as it arrives.

    Past `max_bytes` it deletes what it wrote and stops the upload; Django then reads and
    discards the rest of the request, so the browser gets the form back with a message
    instead of a reset connection.
    """

    FIELD = "file"

    def __init__(self, request, max_bytes: int):
        super().__init__(request)
        self.max_bytes = max_bytes
        self.too_large = False
        self.path: Path | None = None
        self.received = 0

    def new_file(self, field_name, *args, **kwargs):
        super().new_file(field_name, *args, **kwargs)
        if field_name != self.FIELD or self.path is not None:
            raise SkipFile()
        fd, name = tempfile.mkstemp(prefix=FILE_PREFIX, dir=upload_dir())
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.too_large = True
            self.discard()
            raise StopUpload(connection_reset=False)
        self.file.write(raw_data)

    def file_complete(self, file_size):
        self.file.close()
        return UploadedFile(file=None, name=self.file_name, size=file_size, content_type=self.content_type)

    def upload_interrupted(self):
        self.discard()

    def discard(self) -> None:
        """Delete the file written so far (an invalid form, a refused or broken upload)."""
        if self.path is not None:
            self.file.close()
            self.path.unlink(missing_ok=True)
            self.path = None


def remember(request, path: Path, file_name: str, file_format: str) -> str:
    """Bind an uploaded file to this user's session; returns the token that names it."""
    token = secrets.token_urlsafe(24)
    imports = request.session.get(SESSION_KEY, {})
    imports[token] = {"path": str(path), "name": file_name, "format": file_format, "user": request.user.pk}
    request.session[SESSION_KEY] = imports
    return token


def recall(request, token: str) -> dict | None:
    """The upload that `token` names in this session, or None (unknown, another user's, gone)."""
    entry = request.session.get(SESSION_KEY, {}).get(token)
    if not isinstance(entry, dict) or entry.get("user") != request.user.pk:
        return None
    path = Path(entry["path"])
    if path.parent != upload_dir() or not path.name.startswith(FILE_PREFIX) or not path.is_file():
        forget(request, token)
        return None
    return entry


def forget(request, token: str) -> None:
    """Drop the token from the session and delete its file."""
    imports = request.session.get(SESSION_KEY, {})
    entry = imports.pop(token, None)
    request.session[SESSION_KEY] = imports
    if isinstance(entry, dict):
        path = Path(entry["path"])
        if path.parent == upload_dir() and path.name.startswith(FILE_PREFIX):
            path.unlink(missing_ok=True)


def claim(entry: dict) -> Path | None:
    """Take the upload for importing, once: a second confirmation (a double click, two tabs)
    finds it gone instead of importing the file twice. Returns the path to import, or None."""
    path = Path(entry["path"])
    claimed = path.with_name(path.name + ".importing")
    try:
        path.rename(claimed)
    except FileNotFoundError:
        return None
    return claimed


def remove_abandoned_uploads() -> None:
    """Delete uploads nobody confirmed or cancelled within a day."""
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for path in upload_dir().glob(FILE_PREFIX + "*"):
        try:
            status = path.stat()
            if status.st_mtime < cutoff and status.st_uid == os.getuid():
                path.unlink()
        except OSError:  # removed meanwhile, or not ours
            continue
