"""Where a file source's files are: a folder, an S3-compatible bucket, a list of web pages.

Each store lists its files as `Entry`s in key order (what the sync's merge with the stored
documents relies on) and copies one file's bytes into a local file for the parser. A store
says cheaply, from the listing alone, when a file is the one already held (ETag, or size and
modified time), so a re-sync of unchanged files reads and parses nothing.
"""

import dataclasses
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from documents.sources import buckets, web


class StoreError(Exception):
    """A whole listing failed (not one file): the sync stops, and removes nothing."""


@dataclass(frozen=True)
class Entry:
    key: str  # the file's path in the folder or bucket, or the page's URL
    size: int | None = None
    modified: datetime | None = None
    etag: str = ""
    problem: str = ""  # known from the listing alone to be unreadable (a link leading out)


@dataclass
class Copied:
    """What a store tells of a file it copied, besides its bytes."""

    content_type: str = ""  # declared by the server or bucket; "" when only the name tells
    metadata: dict = field(default_factory=dict)  # kept in the document's metadata
    not_modified: bool = False  # the server said so (HTTP 304): nothing was copied


class Store(Protocol):
    def entries(self, after: str = "") -> Iterator[Entry]:
        """Every file, in key order (by code point), with keys after `after`."""

    def unchanged(self, entry: Entry, held: dict) -> bool:
        """Whether the listing alone shows the file is the one held (`held`: its metadata)."""

    def copy(self, entry: Entry, dest: BinaryIO, *, max_bytes: int, held: dict | None) -> Copied:
        """Write the file's bytes into `dest`; raise with the reason when it cannot be read."""


def fingerprint(entry: Entry) -> dict:
    """The listing's facts about a file, kept in its document's metadata for the next sync."""
    facts: dict = {}
    if entry.size is not None:
        facts["size"] = entry.size
    if entry.modified is not None:
        facts["modified"] = entry.modified.astimezone(UTC).isoformat()
    if entry.etag:
        facts["etag"] = entry.etag
    return facts


def sha256_of(file: BinaryIO) -> str:
    file.seek(0)
    return hashlib.file_digest(file, "sha256").hexdigest()


class FileTooLarge(Exception):
    pass


def copy_limited(source: BinaryIO, dest: BinaryIO, max_bytes: int) -> int:
    """Copy in 1 MiB pieces, stopping as soon as the count passes `max_bytes`."""
    written = 0
    while piece := source.read(1024 * 1024):
        written += len(piece)
        if written > max_bytes:
            raise FileTooLarge(too_large_message(written, max_bytes))
        dest.write(piece)
    return written


def too_large_message(size: int, max_bytes: int) -> str:
    return (
        f"too large: {size / 1_048_576:,.1f} MB or more, over the {max_bytes / 1_048_576:,.0f} MB limit "
        "(SOURCE_MAX_FILE_MB)"
    )


# --- A folder on the server's disk ---------------------------------------------------------

DEFAULT_INCLUDE = ("*",)


@dataclass
class FolderStore:
    """Files under `root`, recursively, whose path relative to it (or whose name) matches an
    include pattern and no exclude pattern (shell globs; `*` also crosses folders). Hidden
    files and folders (a name starting with '.') are left out; so are links to folders, which
    are not followed. A link to a file inside the folder is read; one leading out of it is
    listed as a failure, never read."""

    root: Path
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = ()

    def entries(self, after: str = "") -> Iterator[Entry]:
        root = self.root.resolve()
        if not root.is_dir():
            raise StoreError(
                f"the folder {self.root} does not exist, or is not a folder the workers can read"
            )
        keys = []
        # os.walk does not raise for unreadable folders: it calls onerror, which must not hide them.
        for folder, folders, files in os.walk(root, onerror=_raise_store_error):
            folders[:] = [name for name in folders if not name.startswith(".")]
            relative = Path(folder).relative_to(root)
            for name in files:
                key = (relative / name).as_posix()
                if not name.startswith(".") and key > after and self._wanted(key):
                    keys.append(key)
        for key in sorted(keys):
            yield self._entry(root, key)

    def _wanted(self, key: str) -> bool:
        name = key.rsplit("/", 1)[-1]

        def matches(patterns):
            return any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(name, p) for p in patterns)

        return matches(self.include) and not matches(self.exclude)

    def _entry(self, root: Path, key: str) -> Entry:
        path = root / key
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = path.resolve()
                if not target.is_relative_to(root):
                    return Entry(key, problem="a symbolic link leading outside the folder: not read")
                info = target.stat()
        except OSError as exc:
            return Entry(key, problem=f"cannot read it: {exc.strerror or exc}")
        if not stat.S_ISREG(info.st_mode):
            return Entry(key, problem="not a regular file")
        modified = datetime.fromtimestamp(info.st_mtime_ns / 1e9, tz=UTC)
        return Entry(key, size=info.st_size, modified=modified)

    def unchanged(self, entry: Entry, held: dict) -> bool:
        return held.get("size") == entry.size and held.get("modified") == fingerprint(entry).get("modified")

    def copy(self, entry: Entry, dest: BinaryIO, *, max_bytes: int, held: dict | None) -> Copied:
        root = self.root.resolve()
        path = (root / entry.key).resolve()
        # Checked again at the read: the link may have been changed since the listing.
        if not path.is_relative_to(root):
            raise PermissionError("a symbolic link leading outside the folder: not read")
        if entry.size is not None and entry.size > max_bytes:
            raise FileTooLarge(too_large_message(entry.size, max_bytes))
        with open(path, "rb") as file:
            copy_limited(file, dest, max_bytes)
        return Copied(metadata={"path": entry.key})


def _raise_store_error(error: OSError) -> None:
    raise StoreError(f"cannot read the folder {error.filename}: {error.strerror or error}")


# --- An S3-compatible bucket prefix ---------------------------------------------------------


@dataclass
class BucketStore:
    """Objects under a bucket prefix, listed a page at a time (a bucket of 100,000 keys is never
    held whole). Keys are the objects' keys without the prefix. Credentials come from the
    workers' environment only (boto3's chain), never from the database."""

    location: buckets.BucketLocation

    def __post_init__(self):
        self._client = None

    def client(self):
        if self._client is None:
            self._client = buckets.client_for(self.location)
        return self._client

    def entries(self, after: str = "") -> Iterator[Entry]:
        prefix = self.location.prefix
        try:
            for found in buckets.list_entries(
                self.location, after=prefix + after if after else "", client=self.client()
            ):
                yield Entry(
                    found.key[len(prefix) :], size=found.size, modified=found.modified, etag=found.etag
                )
        except buckets.BucketError as exc:
            raise StoreError(str(exc)) from None

    def unchanged(self, entry: Entry, held: dict) -> bool:
        return bool(entry.etag) and held.get("etag") == entry.etag and held.get("size") == entry.size

    def copy(self, entry: Entry, dest: BinaryIO, *, max_bytes: int, held: dict | None) -> Copied:
        key = self.location.prefix + entry.key
        buckets.download(self.location, key, dest, max_bytes=max_bytes, client=self.client())
        return Copied(metadata={"bucket": self.location.bucket, "object_key": key})


# --- Web pages ------------------------------------------------------------------------------


@dataclass
class WebStore:
    """Web pages: a list of URLs, or every page of a sitemap (read at each sync). Each page is
    fetched with the server-side request forgery guard (documents.sources.web); a page the
    server says is not modified (its ETag or Last-Modified, kept from the last fetch) is not
    downloaded again, and one whose bytes are the same is not parsed again."""

    urls: tuple[str, ...]
    sitemap: str
    limits: web.Limits

    def entries(self, after: str = "") -> Iterator[Entry]:
        urls = list(self.urls)
        if self.sitemap:
            try:
                urls += web.sitemap_urls(self.sitemap, limits=self.limits)
            except web.FetchError as exc:
                raise StoreError(f"sitemap {self.sitemap}: {exc}") from None
        for url in sorted(set(urls)):
            if url > after:
                yield Entry(url)

    def unchanged(self, entry: Entry, held: dict) -> bool:
        return False  # only the server can say: copy() asks it

    def copy(self, entry: Entry, dest: BinaryIO, *, max_bytes: int, held: dict | None) -> Copied:
        held = held or {}
        limits = dataclasses.replace(self.limits, max_bytes=max_bytes)
        fetched = web.fetch(
            entry.key,
            dest,
            limits=limits,
            etag=held.get("etag", ""),
            last_modified=held.get("last_modified", ""),
        )
        if fetched.status == 304:
            return Copied(not_modified=True)
        metadata = {"url": entry.key, "size": fetched.size, "content_type": fetched.content_type}
        if fetched.url != entry.key:
            metadata["final_url"] = fetched.url
        if fetched.etag:
            metadata["etag"] = fetched.etag
        if fetched.last_modified:
            metadata["last_modified"] = fetched.last_modified
        return Copied(content_type=fetched.content_type, metadata=metadata)
