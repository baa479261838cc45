"""Bulk import of documents from CSV or JSON Lines, for the admin and `import_documents`.

A file is read as a stream, one row in memory at a time, and twice: `check_file` validates
every row and counts what would happen; `write_file` (only for a file without a bad row)
writes, in batches, inside one transaction, so an import lands whole or not at all. The
enqueue triggers queue the new and changed documents as each batch lands.

Fields: `content` (required, not blank), `title`, `metadata` (a JSON object; in CSV, JSON
text) and `id` (a UUID: an existing document is updated, any other id is created with it).
A field the file does not give leaves an updated document's value as it is; a new document
gets the model's default. Text is checked by the model's own field validators, so an import
accepts exactly what the admin's form accepts, and PostgreSQL never sees a value it refuses.
"""

import codecs
import csv
import gzip
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from documents.models import SourceDocument
from documents.validators import MAX_METADATA_DEPTH

FORMATS = ("csv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FIELDS = ("id", "title", "content", "metadata")
MAX_LISTED_PROBLEMS = 100
PREVIEW_ROWS = 10
# Rows per COPY batch, and a cap on the text held for one batch: documents can be megabytes.
BATCH_ROWS = 1000
BATCH_CHARS = 8 * 1024 * 1024
# Existing ids are looked up this many at a time while checking (one indexed query each).
_ID_LOOKUP_CHUNK = 5000
# The model fields an import does not set, left out of its validation.
_NOT_IMPORTED = [f.name for f in SourceDocument._meta.concrete_fields if f.name not in FIELDS]
# csv refuses fields over 128 KiB by default; a document's text may be far longer.
_MAX_CSV_FIELD_CHARS = 1 << 30

Progress = Callable[[int], None]  # called with the number of file bytes read since the last call


class UnknownFormat(ValueError):
    """The format was neither given nor recognisable from the file name."""


class ImportRefused(Exception):
    """Nothing was written: the file has bad rows, or the database refused the batch."""

    def __init__(self, message: str, problems: list["Problem"] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class Problem:
    line: int | None  # the file line where the bad row (or the bad header) starts
    message: str
    whole_file: bool = False  # the file cannot be read as documents at all (header, encoding, empty)

    def __str__(self):
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class Row:
    line: int
    id: uuid.UUID | None  # None: a new document (an id is drawn when it is written)
    content: str
    title: str | None  # None: not in the file
    metadata: str | None  # the JSON text of an object; None: not in the file


@dataclass
class CheckReport:
    """What `check_file` found; `problems` holds the first MAX_LISTED_PROBLEMS of them."""

    format: str
    rows: int = 0  # data rows read, good and bad
    new: int = 0
    updates: int = 0
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    preview: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.rows > 0

    def add_problem(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(problem)


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    queued: int  # imported documents with a live queue item after the import


def detect_format(file_name: str, explicit: str | None = None) -> str:
    """`explicit` if given, else the format that the file name's extension says (.gz allowed)."""
    if explicit:
        if explicit not in FORMATS:
            raise UnknownFormat(f"Unknown format {explicit!r}; use one of: {', '.join(FORMATS)}.")
        return explicit
    suffixes = [s.lower() for s in Path(file_name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise UnknownFormat(
        f"Cannot tell the format of {Path(file_name).name!r} from its name: use a .csv, .jsonl or .ndjson "
        "file (optionally gzipped, .gz), or choose the format."
    )


def check_file(path, file_format: str, progress: Progress | None = None) -> CheckReport:
    """Validate every row of the file, writing nothing.

    Steps: read the rows one at a time; keep the first problems and a count of all; keep the
    first PREVIEW_ROWS good rows; look up given ids in batches to count new documents and
    updates. Returns a CheckReport; `report.ok` says whether `write_file` may run.
    """
    report = CheckReport(format=file_format)
    pending_ids: list[uuid.UUID] = []

    def count_existing():
        existing = _existing_ids(pending_ids)
        report.updates += len(existing)
        for row in report.preview:
            if row["id"] in existing:
                row["action"] = "update"
        pending_ids.clear()

    good_rows = 0
    for item in read_rows(path, file_format, progress):
        if isinstance(item, Problem):
            report.add_problem(item)
            report.rows += 0 if item.whole_file else 1
            continue
        report.rows += 1
        good_rows += 1
        if len(report.preview) < PREVIEW_ROWS:
            report.preview.append(_preview(item))
        if item.id is not None:
            pending_ids.append(item.id)
            if len(pending_ids) >= _ID_LOOKUP_CHUNK:
                count_existing()
    count_existing()
    report.new = good_rows - report.updates
    if report.rows == 0 and report.problem_count == 0:
        report.add_problem(Problem(None, "The file has no documents in it.", whole_file=True))
    return report


def write_file(
    path, file_format: str, progress: Progress | None = None, *, allow_updates: bool = True
) -> ImportResult:
    """Write every row of a file that `check_file` found good, in one transaction.

    Steps: read the rows again, in batches of BATCH_ROWS (or BATCH_CHARS of text); COPY each
    batch into a temporary table; update the documents whose id exists (refused when not
    `allow_updates`), insert the rest (the triggers queue both); count the batch's live queue
    items. Any bad row (the file changed since it was checked), refused update or database
    error rolls everything back and raises ImportRefused.
    """
    created = updated = queued = 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_STAGING_TABLE)
            for batch in _batches(read_rows(path, file_format, progress)):
                bad = [item for item in batch if isinstance(item, Problem)]
                if bad:
                    raise ImportRefused(
                        "The file has bad rows (did it change since it was checked?); nothing was written.",
                        bad,
                    )
                batch_created, batch_updated, batch_queued = _write_batch(cursor, batch, allow_updates)
                created, updated, queued = (
                    created + batch_created,
                    updated + batch_updated,
                    queued + batch_queued,
                )
    except DatabaseError as exc:
        # A concurrent writer inserting one of the file's ids, a lost connection, a limit of
        # the server: the transaction is rolled back, so say so rather than fail with a 500.
        raise ImportRefused(f"The database refused the import, so nothing was written: {exc}") from exc
    return ImportResult(created=created, updated=updated, queued=queued)


def import_file(path, file_format: str, progress: Progress | None = None) -> ImportResult:
    """Check the whole file, then write it; raises ImportRefused (with the problems) if any row is bad."""
    report = check_file(path, file_format, progress)
    if not report.ok:
        raise ImportRefused(
            f"{report.problem_count} problem(s) in the file; nothing was written.", report.problems
        )
    return write_file(path, file_format, progress)


# --- Reading ---------------------------------------------------------------------------------


def read_rows(path, file_format: str, progress: Progress | None = None) -> Iterator[Row | Problem]:
    """Each row of the file as a checked Row, or a Problem (line None: the file as a whole)."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        binary = gzip.GzipFile(fileobj=raw) if compressed else raw
        lines = _Lines(binary, raw, progress)
        if lines.utf16:
            yield Problem(
                None, "The file is UTF-16 text; save it as UTF-8 (in Excel: CSV UTF-8).", whole_file=True
            )
            return
        # One scratch document validates every row: building a model instance per row would
        # double the time of a check.
        scratch = SourceDocument()
        rows = _csv_rows(lines, scratch) if file_format == "csv" else _jsonl_rows(lines, scratch)
        seen_ids: dict[int, int] = {}  # UUID as an int → its first line, to name duplicates
        try:
            for item in rows:
                if isinstance(item, Row) and item.id is not None:
                    first = seen_ids.setdefault(item.id.int, item.line)
                    if first != item.line:
                        item = Problem(item.line, f"id {item.id} appears again (first on line {first}).")
                yield item
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            yield Problem(
                lines.number or None, f"The file could not be read to the end ({exc}).", whole_file=True
            )


class _Lines:
    """The file's physical lines as text, numbered from 1. A line that is not UTF-8 is decoded
    with replacement characters, so that parsing goes on and every bad row is listed, and noted
    in `undecodable` until the row that holds it claims it."""

    def __init__(self, binary, raw, progress: Progress | None):
        self._binary = iter(binary)
        self._raw, self._progress, self._reported = raw, progress, 0
        self.number = 0
        self.undecodable: dict[int, str] = {}
        head = binary.peek(2)[:2] if hasattr(binary, "peek") else b""
        self.utf16 = head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw_line = next(self._binary)
        self.number += 1
        if self._progress is not None:
            position = self._raw.tell()
            self._progress(position - self._reported)
            self._reported = position
        if self.number == 1 and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[len(codecs.BOM_UTF8) :]
        try:
            return raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.undecodable[self.number] = (
                f"not valid UTF-8 (byte 0x{raw_line[exc.start]:02x} at byte {exc.start + 1} of line "
                f"{self.number}); save the file as UTF-8."
            )
            return raw_line.decode("utf-8", errors="replace")

    def claim_undecodable(self, first: int, last: int) -> str | None:
        found = [self.undecodable.pop(n) for n in range(first, last + 1) if n in self.undecodable]
        return found[0] if found else None


def _csv_rows(lines: _Lines, scratch: SourceDocument) -> Iterator[Row | Problem]:
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_CSV_FIELD_CHARS))
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
        while not header:  # blank lines before the header
            header = next(reader)
    except StopIteration:
        yield Problem(None, "The file is empty.", whole_file=True)
        return
    except csv.Error as exc:
        yield Problem(1, f"The header is not valid CSV ({exc}).", whole_file=True)
        return
    undecodable = lines.claim_undecodable(1, lines.number)
    if undecodable:
        yield Problem(1, f"The header is {undecodable}", whole_file=True)
        return
    names = [name.strip().lower() for name in header]
    header_problems = _header_problems(names)
    if header_problems:
        for message in header_problems:
            yield Problem(1, message, whole_file=True)
        return

    while True:
        start = lines.number + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.claim_undecodable(start, lines.number)
            yield Problem(start, f"not valid CSV ({exc}); check the quotes on this row.")
            continue
        if not values:  # a blank line
            continue
        undecodable = lines.claim_undecodable(start, lines.number)
        if undecodable:
            yield Problem(start, undecodable)
        elif len(values) != len(names):
            yield Problem(start, f"has {len(values)} fields but the header has {len(names)}.")
        else:
            yield _checked_row(start, dict(zip(names, values, strict=True)), scratch, metadata_is_text=True)


def _header_problems(names: list[str]) -> list[str]:
    problems = []
    if "content" not in names:
        problems.append(
            f"The header has no 'content' column (it has {_listed(names)}); every document needs its text."
        )
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        problems.append(
            f"Unknown column(s) {_listed(unknown)} in the header; the columns are {_listed(FIELDS)}."
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        problems.append(f"The header names {_listed(duplicated)} more than once.")
    separator = next((sep for sep in (";", "\t") if len(names) == 1 and sep in names[0]), None)
    if separator:  # Excel in many locales separates with ";"
        problems.append(
            f"The columns seem separated by {separator!r}: save the file with commas between columns."
        )
    return problems


def _jsonl_rows(lines: _Lines, scratch: SourceDocument) -> Iterator[Row | Problem]:
    any_line = False
    for text in lines:
        line = lines.number
        any_line = True
        undecodable = lines.claim_undecodable(line, line)
        if undecodable:
            yield Problem(line, undecodable)
            continue
        if not text.strip():
            continue
        try:
            record = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            yield Problem(line, f"not valid JSON ({_json_error(exc)}).")
            continue
        except RecursionError:
            yield Problem(line, TOO_DEEP)
            continue
        if not isinstance(record, dict):
            yield Problem(line, f'must be a JSON object like {{"content": "..."}}, not {_json_kind(record)}.')
            continue
        unknown = [name for name in record if name not in FIELDS]
        if unknown:
            yield Problem(line, f"unknown field(s) {_listed(unknown)}; the fields are {_listed(FIELDS)}.")
            continue
        yield _checked_row(line, record, scratch, metadata_is_text=False)
    if not any_line:
        yield Problem(None, "The file is empty.", whole_file=True)


def _checked_row(
    line: int, record: dict, scratch: SourceDocument, *, metadata_is_text: bool
) -> Row | Problem:
    """The record as a Row, or the first thing wrong with it as a Problem."""
    if "content" not in record:
        return Problem(line, "has no 'content'; every document needs its text.")
    for name in ("content", "title"):
        if name in record and record[name] is not None and not isinstance(record[name], str):
            return Problem(line, f"{name} must be text, not {_json_kind(record[name])}.")
    content, title = record["content"], record.get("title")
    if content is None or not content.strip():
        return Problem(line, "content is empty; there is nothing to embed.")

    document_id = None
    raw_id = record.get("id")
    if raw_id not in (None, ""):
        try:
            document_id = uuid.UUID(str(raw_id).strip())
        except ValueError:
            return Problem(
                line, f"id {_shown(raw_id)} is not a UUID (like 0b7e1a4c-3f0e-4a57-9d5e-2c1f3b8a9d10)."
            )

    metadata = None
    if "metadata" in record:
        metadata, problem = _metadata(record["metadata"], is_text=metadata_is_text)
        if problem:
            return Problem(line, problem)

    # The model's own field checks (validators, max_length): the same rules as the admin form.
    scratch.title, scratch.content, scratch.metadata = title or "", content, metadata or {}
    try:
        scratch.clean_fields(exclude=_NOT_IMPORTED)
    except ValidationError as exc:
        name, messages = next(iter(exc.message_dict.items()))
        return Problem(line, f"{name}: {' '.join(messages)}")
    metadata_text = json.dumps(metadata, ensure_ascii=False) if metadata is not None else None
    return Row(line=line, id=document_id, content=content, title=title, metadata=metadata_text)


# Python's JSON parser recurses once per level; a line nested thousands deep is refused, not a crash.
TOO_DEEP = f"nests too deeply to read (metadata may nest at most {MAX_METADATA_DEPTH} levels)."


def _metadata(value, *, is_text: bool) -> tuple[dict | None, str | None]:
    """(the metadata object, None) or (None, what is wrong with it)."""
    if is_text:
        if not value.strip():
            return {}, None
        try:
            value = json.loads(value, parse_constant=_refuse_constant)
        except ValueError as exc:
            return (
                None,
                f'metadata is not valid JSON ({_json_error(exc)}); write an object like {{"source": "wiki"}}.',
            )
        except RecursionError:
            return None, TOO_DEEP
    if not isinstance(value, dict):
        return None, f'metadata must be a JSON object like {{"source": "wiki"}}, not {_json_kind(value)}.'
    # Strings inside that PostgreSQL cannot store (NUL, lone surrogates) and absurd nesting are
    # the model's validate_json_object's to refuse (through clean_fields below), as for the admin.
    return value, None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _json_error(exc: ValueError) -> str:
    # JSONDecodeError's own text says "line 1 column 5": the line of the value, not of the file.
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.colno}"
    return str(exc)


def _json_kind(value) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(type(value), "a number")


def _shown(value) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _listed(names) -> str:
    return ", ".join(repr(name) for name in names)


def _preview(row: Row) -> dict:
    return {
        "line": row.line,
        "id": row.id,
        "title": row.title or "",
        "content_start": row.content[:200],
        "action": "new",
    }


def _existing_ids(ids: list[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM source_documents WHERE id = ANY(%s)", [ids])
        return {found for (found,) in cursor.fetchall()}


# --- Writing ---------------------------------------------------------------------------------


def _batches(items: Iterator[Row | Problem]) -> Iterator[list[Row | Problem]]:
    batch: list[Row | Problem] = []
    chars = 0
    for item in items:
        batch.append(item)
        chars += len(item.content) if isinstance(item, Row) else 0
        if len(batch) >= BATCH_ROWS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


_STAGING = "pg_temp.sidecar_import_rows"
# Once per database session; emptied at commit or rollback, and between batches.
_STAGING_TABLE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING.removeprefix("pg_temp.")} (
    id uuid PRIMARY KEY, line integer NOT NULL, title text, content text NOT NULL, metadata text
) ON COMMIT DELETE ROWS"""
# A title or metadata the file did not give (NULL here) leaves the document's own.
_UPDATE_EXISTING = f"""
UPDATE source_documents d
   SET title = COALESCE(s.title, d.title), content = s.content,
       metadata = COALESCE(s.metadata::jsonb, d.metadata), updated_at = statement_timestamp()
  FROM {_STAGING} s
 WHERE d.id = s.id"""
_INSERT_NEW = f"""
INSERT INTO source_documents (id, title, content, metadata)
SELECT s.id, COALESCE(s.title, ''), s.content, COALESCE(s.metadata::jsonb, '{{}}'::jsonb)
  FROM {_STAGING} s
 WHERE NOT EXISTS (SELECT 1 FROM source_documents d WHERE d.id = s.id)"""
_FIRST_EXISTING = f"""
SELECT s.id, s.line FROM {_STAGING} s JOIN source_documents d ON d.id = s.id ORDER BY s.line LIMIT 1"""
# Read only: the queue's own columns are written by the triggers and queue_admin/queue_sql.py.
_COUNT_QUEUED = f"""
SELECT count(*) FROM embedding_queue q JOIN {_STAGING} s ON q.document_id = s.id
 WHERE q.status IN ('pending', 'processing', 'rate_limited')"""


def _write_batch(cursor, rows: list[Row], allow_updates: bool) -> tuple[int, int, int]:
    """(created, updated, queued) for one batch: a few statements after the COPY, whatever its size."""
    cursor.execute(f"TRUNCATE {_STAGING}")
    with cursor.cursor.copy(
        f"COPY {_STAGING} (id, line, title, content, metadata) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["uuid", "int4", "text", "text", "text"])
        for row in rows:
            copy.write_row((row.id or uuid.uuid4(), row.line, row.title, row.content, row.metadata))
    # A temp table has no statistics; with them the planner probes source_documents by its
    # primary key per staged row instead of hashing the whole table for every batch.
    cursor.execute(f"ANALYZE {_STAGING} (id)")
    if not allow_updates:
        cursor.execute(_FIRST_EXISTING)
        existing = cursor.fetchone()
        if existing:
            raise ImportRefused(
                f"Line {existing[1]} has the id of an existing document ({existing[0]}), and updating "
                "documents is not allowed here; nothing was written."
            )
    cursor.execute(_UPDATE_EXISTING)
    updated = cursor.rowcount
    cursor.execute(_INSERT_NEW)
    created = cursor.rowcount
    cursor.execute(_COUNT_QUEUED)
    (queued,) = cursor.fetchone()
    return created, updated, queued
