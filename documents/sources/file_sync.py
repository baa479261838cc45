"""Syncing a file source: its store's files become documents, kept in step.

One pass merges two lists sorted the same way (by code point, PostgreSQL's "C" collation):
the store's listing and the documents the source holds. A key only listed is a new file; one
in both is skipped when the listing shows it unchanged (ETag, or size and modified time),
else copied, and skipped still when its bytes hash as before; a key only held is a removed
file. Memory stays flat whatever the number of files, and a pass can stop after any file and
go on later from that key (the engine runs long syncs as a chain of tasks).

A file that fails (unreadable, too large, not parseable) is recorded with the reason and
leaves its document as it was; the other files go on. A listing that fails stops the sync
and removes nothing, because a cut-short listing looks like deleted files.
"""

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from django.db import connection, reset_queries
from django.db.models.functions import Collate

from documents.models import SourceDocument
from documents.parsing import ParseError, parse_file
from documents.sources.stores import Entry, Store, StoreError, fingerprint, sha256_of

logger = logging.getLogger("sidecar.sources")

# The Sources page shows this many failed files of a sync, and counts the rest.
MAX_FAILURES_KEPT = 200
TITLE_CHARACTERS = 500


@dataclass
class SyncReport:
    started_at: str = ""
    finished_at: str = ""
    seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    failures: list[dict] = field(default_factory=list)  # [{"key": ..., "reason": ...}]
    error: str = ""  # the whole sync stopped (a listing failed): nothing was removed
    running: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "SyncReport":
        known = {name: value for name, value in (data or {}).items() if name in cls.__dataclass_fields__}
        return cls(**known)

    def fail(self, key: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append({"key": key, "reason": reason})
        logger.info("source file failed: %s: %s", key, reason)

    def summary(self) -> str:
        return (
            f"{self.seen:,} seen, {self.new:,} new, {self.changed:,} changed, {self.removed:,} removed, "
            f"{self.failed:,} failed"
        )


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_characters: int
    remove_missing: bool = True  # a file gone from the store loses its document (else kept)


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def sync(
    source_id: int,
    store: Store,
    report: SyncReport,
    limits: Limits,
    *,
    after: str = "",
    deadline: float | None = None,
    progress: Callable[[SyncReport], None] | None = None,
) -> str | None:
    """Sync files with keys after `after` into `report`. Returns the key to go on after when
    `deadline` (time.monotonic()) passed first; None when the pass is complete."""
    held = _held(source_id, after)
    current = next(held, None)
    previous = after
    for entry in store.entries(after):
        if entry.key <= previous:
            raise StoreError(f"the store listed {entry.key!r} after {previous!r}: not in key order")
        previous = entry.key
        while current is not None and current[0] < entry.key:
            _remove(source_id, current, report, limits)
            current = next(held, None)
        known = None
        if current is not None and current[0] == entry.key:
            known, current = current, next(held, None)
        report.seen += 1
        _sync_file(source_id, store, entry, known, report, limits)
        # With DEBUG on (make demo), Django keeps every query's text, each file's whole text
        # among them, until a web request starts; a sync is no request, so it forgets them here.
        reset_queries()
        if progress is not None:
            progress(report)
        if deadline is not None and time.monotonic() > deadline:
            return entry.key
    while current is not None:
        _remove(source_id, current, report, limits)
        current = next(held, None)
    return None


def _held(source_id: int, after: str) -> Iterator[tuple]:
    """(key, id, metadata) of the source's documents with keys after `after`, in code point order."""
    return (
        SourceDocument.objects.filter(source_id=source_id)
        .alias(key_c=Collate("source_key", "C"))
        .filter(key_c__gt=after)
        .order_by("key_c")
        .values_list("source_key", "id", "metadata")
        .iterator(chunk_size=2000)
    )


def _remove(source_id: int, held: tuple, report: SyncReport, limits: Limits) -> None:
    if not limits.remove_missing:
        return
    with connection.cursor() as cursor:
        # The enqueue triggers cancel its queue items; its chunks go by the foreign key's cascade.
        cursor.execute("DELETE FROM source_documents WHERE id = %s AND source_id = %s", [held[1], source_id])
        report.removed += cursor.rowcount


def _sync_file(source_id: int, store: Store, entry: Entry, known: tuple | None, report, limits) -> None:
    if entry.problem:
        report.fail(entry.key, entry.problem)
        return
    held_metadata = known[2] if known else None
    if held_metadata is not None and store.unchanged(entry, held_metadata):
        report.unchanged += 1
        return
    with tempfile.NamedTemporaryFile(prefix="sidecar-file-") as file:
        try:
            copied = store.copy(entry, file, max_bytes=limits.max_bytes, held=held_metadata)
        except Exception as exc:  # noqa: BLE001 — any failure of one file is that file's, reported
            report.fail(entry.key, _reason(exc))
            return
        if copied.not_modified and known is not None:
            report.unchanged += 1
            return
        file.flush()
        metadata = {**fingerprint(entry), **copied.metadata, "sha256": sha256_of(file)}
        if held_metadata is not None and held_metadata.get("sha256") == metadata["sha256"]:
            _refresh_metadata(known[1], {**held_metadata, **metadata})
            report.unchanged += 1
            return
        try:
            parsed = parse_file(
                file.name,
                name=entry.key,
                content_type=copied.content_type or None,
                max_characters=limits.max_characters,
            )
        except ParseError as exc:
            report.fail(entry.key, str(exc))
            return
    title = (parsed.title.strip() or _name_of(entry.key))[:TITLE_CHARACTERS]
    metadata = {**parsed.metadata, **metadata}
    sections = [asdict(section) for section in parsed.sections] or None
    inserted = write_document(source_id, entry.key, title, parsed.text, metadata, sections)
    if inserted is None:
        raise StoreError("the source is being detached")
    if inserted:
        report.new += 1
    else:
        report.changed += 1


def write_document(source_id: int, key: str, title: str, text: str, metadata: dict, sections) -> bool | None:
    """Insert or update the document of `key`, in one statement; True when it is new, None
    when the source is being detached (nothing written). The enqueue triggers queue it when
    its text is new or changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO source_documents AS d (source_id, source_key, title, content, metadata, sections)
               SELECT %s, %s, %s, %s, %s::jsonb, %s::jsonb
                WHERE EXISTS (SELECT FROM document_sources WHERE id = %s AND state <> 'detaching')
               ON CONFLICT (source_id, source_key) DO UPDATE
                  SET title = EXCLUDED.title, content = EXCLUDED.content, metadata = EXCLUDED.metadata,
                      sections = EXCLUDED.sections, updated_at = now()
               RETURNING (xmax = 0)""",
            [source_id, key, title, text, json.dumps(metadata), json.dumps(sections) if sections else None,
             source_id],
        )  # fmt: skip
        row = cursor.fetchone()
        return None if row is None else row[0]


def _refresh_metadata(document_id, metadata: dict) -> None:
    """Same bytes, new listing facts (a touched file): keep them, so the next sync skips it
    without reading. The text is untouched, so nothing is queued."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE source_documents SET metadata = %s::jsonb WHERE id = %s",
            [json.dumps(metadata), document_id],
        )


def _name_of(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1] or key


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read it: {exc.strerror}"
    return str(exc) or type(exc).__name__
