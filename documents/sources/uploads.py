"""An uploads source's files on the server's disk, under SOURCE_UPLOAD_DIR/<source id>/:

- `files/` holds every file uploaded to the source, by its name (a zip's entries by their path
  in the zip). It is what the source syncs from, as a folder source syncs from its folder:
  uploading a name again replaces the file, and the sync then updates that one document.
- `incoming/` holds uploads not taken in yet, one folder per upload request. The web request
  writes a batch under a hidden name and renames it when complete, so a worker never takes
  in half an upload; the worker takes batches in, oldest first, at the start of a sync.

Taking in is where uploads are checked: a plain file must be of a supported type and within
the size limit; a .zip is read with archives.py (a bomb or a damaged zip is refused whole,
an entry leading outside it or a link on its own) and extracted entry by entry through a
temporary file, so `files/` never holds half a file. Every refusal is reported with its
reason and nothing of it is kept.
"""

import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from documents.parsing import content_type_for, supported_types
from documents.sources import archives
from documents.sources.stores import FileTooLarge, copy_limited, too_large_message

FILES = "files"
INCOMING = "incoming"
WRITING_PREFIX = ".writing-"
PARTIAL_PREFIX = ".partial-"
# A batch a web request began and never finished (the process died) is removed after this.
ABANDONED_AFTER_SECONDS = 24 * 3600
MAX_NAME_CHARACTERS = 255
UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
# macOS adds these to every zip it makes: resource forks, never documents.
MACOS_ZIP_FOLDER = "__MACOSX"

Refuse = Callable[[str, str], None]  # (name, reason)


class UploadRefused(Exception):
    """One uploaded file is refused; str(e) says why."""


def source_dir(root: Path, source_id: int) -> Path:
    return Path(root) / str(int(source_id))


def files_dir(root: Path, source_id: int) -> Path:
    return source_dir(root, source_id) / FILES


def incoming_dir(root: Path, source_id: int) -> Path:
    return source_dir(root, source_id) / INCOMING


def check_name(name: str) -> str:
    """The name an uploaded file is kept under: the browser's file name, without any folder
    part. UploadRefused for a name that is empty, hidden, too long or has control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in {".", ".."}:
        raise UploadRefused("the file has no name")
    if name.startswith("."):
        raise UploadRefused("a hidden file (its name starts with '.'): not taken in")
    if UNSAFE_NAME.search(name):
        raise UploadRefused("the name has control characters")
    if len(name) > MAX_NAME_CHARACTERS:
        raise UploadRefused(f"the name is longer than {MAX_NAME_CHARACTERS} characters")
    return name


def is_archive(name: str) -> bool:
    return name.lower().endswith(".zip")


def check_type(name: str) -> None:
    if content_type_for(name) is None:
        raise UploadRefused(f"unsupported type; supported: {supported_types()}, and .zip archives of them")


class Batch:
    """One upload request's files, written by the web request. Use as a context manager: on
    success the batch is handed to the workers (renamed), on an exception it is deleted."""

    def __init__(self, root: Path, source_id: int):
        self.incoming = incoming_dir(root, source_id)
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=WRITING_PREFIX, dir=self.incoming))
        self.count = 0
        self.handed_over = False

    def new_file(self, name: str):
        """An open binary file to write the next uploaded file into. Numbered, so two uploads
        of one name in a request are taken in in order (the later wins)."""
        self.count += 1
        return open(self.path / f"{self.count:05d}-{name}", "xb")

    def add(self, name: str, source: BinaryIO, max_bytes: int, bytes_left: int) -> int:
        """Stream `source` into the batch as `name`; its size. UploadRefused, keeping nothing of
        it, past `max_bytes` for the file or `bytes_left` for the whole upload."""
        with self.new_file(name) as dest:
            try:
                return copy_limited(source, dest, min(max_bytes, bytes_left))
            except FileTooLarge as exc:
                Path(dest.name).unlink()
                raise UploadRefused(str(exc) if max_bytes <= bytes_left else upload_too_large()) from None

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def hand_over(self) -> Path:
        """Make the batch visible to the workers; its final path."""
        final = self.incoming / f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        os.rename(self.path, final)
        self.path = final
        self.handed_over = True
        return final

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.handed_over:  # failed, or nothing in it
            self.discard()


def upload_too_large() -> str:
    return "the upload is larger than SOURCE_UPLOAD_MAX_MB allows: upload fewer files at a time"


def pending_batches(root: Path, source_id: int) -> list[Path]:
    """Complete batches waiting to be taken in, oldest first."""
    incoming = incoming_dir(root, source_id)
    if not incoming.is_dir():
        return []
    return sorted(path for path in incoming.iterdir() if path.is_dir() and not path.name.startswith("."))


def take_in_all(root: Path, source_id: int, *, max_bytes: int, refuse: Refuse) -> list[str]:
    """Take every waiting batch in, oldest first; the names taken in (a name uploaded twice is
    listed twice). Each batch is removed afterwards, whatever happened to its files."""
    files = files_dir(root, source_id)
    files.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(incoming_dir(root, source_id))
    taken: list[str] = []
    for batch in pending_batches(root, source_id):
        try:
            for path in sorted(batch.iterdir()):
                name = path.name.split("-", 1)[1]
                taken.extend(_take_in_file(path, name, files, max_bytes=max_bytes, refuse=refuse))
        finally:
            shutil.rmtree(batch, ignore_errors=True)
    return taken


def _take_in_file(path: Path, name: str, files: Path, *, max_bytes: int, refuse: Refuse) -> list[str]:
    if is_archive(name):
        return _extract(path, name, files, max_bytes=max_bytes, refuse=refuse)
    try:
        check_type(name)
        size = path.stat().st_size
        if size > max_bytes:
            raise UploadRefused(too_large_message(size, max_bytes))
        _place(files, name, moved_from=path)
    except (UploadRefused, OSError) as exc:
        refuse(name, str(exc))
        return []
    return [name]


def _extract(path: Path, name: str, files: Path, *, max_bytes: int, refuse: Refuse) -> list[str]:
    limits = archives.ArchiveLimits(max_entry_bytes=max_bytes)
    taken = []
    try:
        with archives.zipfile.ZipFile(path) as archive:
            members, refused = archives.members(archive, limits)
            for entry in refused:
                refuse(f"{name}: {entry.name}", entry.reason)
            for member in members:
                parts = member.name.split("/")
                if parts[0] == MACOS_ZIP_FOLDER:
                    continue
                key = f"{name}: {member.name}"
                try:
                    if any(part.startswith(".") for part in parts):
                        raise UploadRefused("a hidden file (its name starts with '.'): not taken in")
                    check_type(member.name)
                    _place(
                        files,
                        member.name,
                        write=lambda dest, member=member: archives.extract_member(
                            archive, member, dest, limits=limits
                        ),
                    )
                except (UploadRefused, archives.ArchiveError, OSError) as exc:
                    refuse(key, str(exc))
                    continue
                taken.append(member.name)
    except archives.ArchiveError as exc:
        refuse(name, str(exc))
    except archives.zipfile.BadZipFile:
        refuse(name, "refused: not a zip file, or a damaged one")
    return taken


def _place(
    files: Path, relative: str, *, write: Callable | None = None, moved_from: Path | None = None
) -> None:
    """Put a file into `files` at `relative`, renamed over the old one so that a sync reading
    it meanwhile sees the old file or the new one, never a part: `moved_from` (a file of the
    batch, on the same disk) is renamed; otherwise `write` fills a hidden temporary file in the
    same folder first. The path was checked to stay inside `files` (archives.py for a zip's
    entries, check_name for a plain file); checked again here."""
    target = files / relative
    if not target.resolve().is_relative_to(files.resolve()):
        raise UploadRefused("a path leading outside the uploads: not taken in")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UploadRefused("a file of the same name is in the way of its folder") from None
    if target.is_dir():
        raise UploadRefused("a folder of the same name is in the way")
    if moved_from is not None:
        os.replace(moved_from, target)
        return
    fd, temporary = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as dest:
            write(dest)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_abandoned(incoming: Path) -> None:
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for path in incoming.glob(WRITING_PREFIX + "*"):
        try:
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def remove_source(root: Path, source_id: int) -> None:
    """Delete everything uploaded to a source (it was detached)."""
    shutil.rmtree(source_dir(root, source_id), ignore_errors=True)


def waiting(root: Path, source_id: int) -> int:
    """How many upload batches wait for a worker."""
    return len(pending_batches(root, source_id))
