"""Reads and writes of the sidecar table (`document_embeddings`) for the workers.

The queue's own columns are written only by queue_admin/queue_sql.py; this module writes the
chunks, inside the same transaction as the completion (see queue_admin/worker.py).
"""

import functools
import uuid
import weakref
from dataclasses import dataclass

import numpy as np
from django.db import OperationalError, connection, transaction
from pgvector.psycopg.vector import VectorBinaryDumper, VectorBinaryLoader, VectorDumper, VectorLoader
from psycopg import errors
from psycopg.types import TypeInfo

from documents.models import DocumentEmbedding, SourceDocument


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    text_hash: str
    vector: object  # a float32 numpy row, or a vector read back from the sidecar
    token_count: int
    page: int | None = None  # where in a parsed file it is, for citations
    heading: str = ""


def current_texts(document_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str, list | None]]:
    """{document_id: (content, md5 of content, sections)} for the documents that still exist;
    sections are where a parsed file's pages and headings begin (None for plain text)."""
    rows = SourceDocument.objects.filter(id__in=document_ids).values_list(
        "id", "content", "content_hash", "sections"
    )
    return {doc_id: (content, digest, sections) for doc_id, content, digest, sections in rows}


def embedded_hashes(document_ids: list[uuid.UUID], model: str) -> dict[uuid.UUID, tuple[set[str], set[str]]]:
    """{document_id: (document_text_hashes, chunk_text_hashes)} held for `model`."""
    result: dict[uuid.UUID, tuple[set[str], set[str]]] = {}
    rows = DocumentEmbedding.objects.filter(document_id__in=document_ids, model=model).values_list(
        "document_id", "document_text_hash", "source_text_hash"
    )
    for doc_id, doc_hash, chunk_hash in rows:
        doc_hashes, chunk_hashes = result.setdefault(doc_id, (set(), set()))
        doc_hashes.add(doc_hash)
        chunk_hashes.add(chunk_hash)
    return result


def vectors_for_hashes(document_ids: list[uuid.UUID], model: str, hashes: set[str]) -> dict[str, tuple]:
    """{chunk text hash: (vector, token_count)} for chunks that can be reused as they are."""
    if not hashes:
        return {}
    rows = DocumentEmbedding.objects.filter(
        document_id__in=document_ids, model=model, source_text_hash__in=hashes
    ).values_list("source_text_hash", "embedding", "token_count")
    return {digest: (vector, tokens) for digest, vector, tokens in rows}


class DocumentsBusy(Exception):
    """Another transaction holds one of the documents (an edit not yet committed)."""


def lock_current_hashes(document_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Lock the documents against edits until commit and return their current text's MD5 (the
    stored `content_hash`: a long text is not read again to hash it).

    Held across the write, this makes "is the text still the one we embedded?" and the write
    one atomic step: an edit waits, then its trigger sees our completed item and queues anew.

    NOWAIT, all or nothing: raises DocumentsBusy (having locked nothing) when any document is
    held by an uncommitted edit. Waiting instead would deadlock with an application statement
    that updates several mirrored rows: it locks documents in its own row order and waits for
    ours, while we, holding some, wait for one of its. PostgreSQL then cancels one side,
    sometimes the application's mirror trigger, whose change would be lost. The caller tries
    again in a moment (see QueueWorker.write_plans); it holds no other lock when it calls this.
    """
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint: the failure is undone
            cursor.execute(
                "SELECT id, content_hash FROM source_documents WHERE id = ANY(%s) ORDER BY id FOR SHARE NOWAIT",
                [list(document_ids)],
            )
            return dict(cursor.fetchall())
    except OperationalError as error:
        if isinstance(error.__cause__, errors.LockNotAvailable):
            raise DocumentsBusy from error
        raise


def replace_chunks(documents: dict[uuid.UUID, tuple[str, list[Chunk]]], model: str) -> None:
    """Make the sidecar hold exactly the given chunks for each (document, model).

    `documents` maps document id → (document text hash, chunks). Call inside a transaction.
    Steps: COPY every chunk of the batch in binary into a session-local staging table (no
    per-vector text formatting in Python, no text parsing in PostgreSQL); one upsert from it;
    one delete of the chunks past each document's new count (a document with no chunks loses
    all its rows). Three statements whatever the batch size.
    """
    with connection.cursor() as cursor:
        if any(chunks for _, chunks in documents.values()):
            cursor.execute(_STAGING_TABLE)
            psycopg_cursor = cursor.cursor
            _register_vector(psycopg_cursor)
            with psycopg_cursor.copy(f"COPY {_STAGING} FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["uuid", "int4", "text", "text", "text", "vector", "int4", "int4", "text"])
                for document_id, (document_hash, chunks) in documents.items():
                    for chunk in chunks:
                        copy.write_row(
                            (document_id, chunk.index, chunk.text, chunk.text_hash, document_hash,
                             np.asarray(chunk.vector, dtype=np.float32), chunk.token_count, chunk.page,
                             chunk.heading)
                        )  # fmt: skip
            cursor.execute(_UPSERT_FROM_STAGING, [model])
        cursor.execute(
            """DELETE FROM document_embeddings e
                USING unnest(%s::uuid[], %s::integer[]) AS keep(document_id, chunk_count)
                WHERE e.document_id = keep.document_id AND e.model = %s AND e.chunk_index >= keep.chunk_count""",
            [list(documents), [len(chunks) for _, chunks in documents.values()], model],
        )


_STAGING = "pg_temp.sidecar_incoming_chunks"
# Created once per database session; emptied at every commit, so it never holds stale rows.
_STAGING_TABLE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING.removeprefix("pg_temp.")} (
    document_id uuid, chunk_index integer, source_text text, source_text_hash text,
    document_text_hash text, embedding vector, token_count integer, page integer, heading text
) ON COMMIT DELETE ROWS"""
_UPSERT_FROM_STAGING = f"""
INSERT INTO document_embeddings AS e (
    document_id, chunk_index, source_text, source_text_hash, document_text_hash, embedding, model,
    token_count, page, heading, created_at, updated_at)
SELECT document_id, chunk_index, source_text, source_text_hash, document_text_hash, embedding, %s,
       token_count, page, heading, statement_timestamp(), statement_timestamp()
  FROM {_STAGING}
ON CONFLICT (document_id, chunk_index, model) DO UPDATE
   SET source_text = EXCLUDED.source_text, source_text_hash = EXCLUDED.source_text_hash,
       document_text_hash = EXCLUDED.document_text_hash, embedding = EXCLUDED.embedding,
       token_count = EXCLUDED.token_count, page = EXCLUDED.page, heading = EXCLUDED.heading,
       updated_at = EXCLUDED.updated_at"""

# The `vector` type's OID, looked up once per database connection.
_vector_types: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _register_vector(psycopg_cursor) -> None:
    """Teach this cursor the `vector` type (pgvector's register_vector_info, minus its leak).

    register_vector_info makes two new dumper classes on every call, and psycopg keeps every
    dumper class it has seen in a process-wide cache (AdaptersMap._optimised): called per
    batch, a worker grew by about 6 KB a batch, 12% RSS over 50,000 documents (`python -m
    bench memory`). The classes are made once per process and type OID, and reused.
    """
    info = _vector_type(psycopg_cursor.connection)
    info.register(psycopg_cursor)
    adapters = psycopg_cursor.adapters
    for dumper in _vector_dumpers(info.oid):
        adapters.register_dumper("numpy.ndarray", dumper)
    adapters.register_loader(info.oid, VectorLoader)
    adapters.register_loader(info.oid, VectorBinaryLoader)


@functools.cache
def _vector_dumpers(oid: int) -> tuple[type, type]:
    """Dumpers that know the `vector` OID (COPY's set_types looks dumpers up by OID)."""
    return (
        type("VectorTextDumper", (VectorDumper,), {"oid": oid}),
        type("VectorBinaryDumperWithOid", (VectorBinaryDumper,), {"oid": oid}),
    )


def _vector_type(psycopg_connection) -> TypeInfo:
    info = _vector_types.get(psycopg_connection)
    if info is None:
        info = _vector_types[psycopg_connection] = TypeInfo.fetch(psycopg_connection, "vector")
    return info
