"""Keyword search's index: each chunk's words as a tsvector (`ChunkTerms`, the table
document_chunk_terms, under a GIN index), made by a PostgreSQL text search configuration.

Which configuration is in one row, document_terms_config: `config`, what new chunks are
indexed with (the triggers of documents/sql/keyword_search.sql read it) and what queries
parse their words with; and, while a change of configuration is being applied,
`rebuilding_from`, the configuration that rows not yet rebuilt still have. Queries then match
the words as both configurations read them, so a search during a rebuild finds what either
finds — never nothing. SEARCH_TEXT_CONFIG is what the operator wants; `rebuild` makes the row,
and every chunk's terms, say it, with no migration.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from documents.models import ChunkTerms

CONFIG_TABLE = "document_terms_config"
# The configuration row, read by a search in the statement that sets up its transaction.
CURRENT_CONFIGS = f"(SELECT config FROM {CONFIG_TABLE}), (SELECT rebuilding_from FROM {CONFIG_TABLE})"
REBUILD_BATCH = 2_000


class KeywordIndexError(Exception):
    """Keyword search cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class Configs:
    config: str | None  # None: the configuration row is missing
    rebuilding_from: str | None = None


def current() -> Configs:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {CURRENT_CONFIGS}")
        return Configs(*cursor.fetchone())


def missing_config_error() -> KeywordIndexError:
    return KeywordIndexError(
        f"Keyword search is not set up: the row of {CONFIG_TABLE} is missing. Run "
        "`python manage.py rebuild_search_index`. Vector search (mode=vector) works meanwhile."
    )


def resolve_config(name: str) -> str:
    """The text search configuration called `name` (`schema.name` too), as the server writes
    it; KeywordIndexError, with the ones it has, when the database has none of that name."""
    schema, _, config = name.rpartition(".")
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.oid::regconfig::text FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace
                WHERE c.cfgname = %s AND CASE WHEN %s = '' THEN pg_ts_config_is_visible(c.oid) ELSE n.nspname = %s END""",
            [config, schema, schema],
        )
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        cursor.execute(
            "SELECT string_agg(name, ', ' ORDER BY name) FROM (SELECT oid::regconfig::text AS name FROM pg_ts_config)"
        )
        known = cursor.fetchone()[0]
    raise KeywordIndexError(
        f"{name!r} is not a text search configuration of this database; it has: {known}. "
        "Set SEARCH_TEXT_CONFIG to one of them (or create the configuration first)."
    )


@dataclass(frozen=True)
class Rebuild:
    config: str
    previous: str | None
    chunks: int  # chunks whose terms were made again
    seconds: float = 0.0


def rebuild(
    config: str | None = None, progress: Callable[[int, int], None] | None = None, batch: int = REBUILD_BATCH
) -> Rebuild:
    """Make keyword search use `config` (default SEARCH_TEXT_CONFIG), and every chunk's terms
    with it; `progress(done, total)` after each batch.

    First the configuration row changes, in a transaction of its own, so that chunks written
    from then on get the new configuration and queries read words both ways; then the terms of
    every chunk made otherwise (or not at all) are made again, `batch` chunks a transaction,
    in the order of their ids, so that the workers' writes wait at most one batch; then the
    row says the rebuild is done. An interrupted rebuild is finished by running it again.
    """
    wanted = resolve_config(config or settings.SEARCH_TEXT_CONFIG)
    started = time.monotonic()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT config, rebuilding_from FROM {CONFIG_TABLE} FOR UPDATE")
            row = cursor.fetchone()
            previous, rebuilding_from = row if row else (None, None)
            if rebuilding_from is not None and previous != wanted:
                raise KeywordIndexError(
                    f"A rebuild of the keyword index from {rebuilding_from!r} to {previous!r} has not finished: "
                    f"finish it first (rebuild_search_index --config {previous}), then rebuild for {wanted!r}."
                )
            if row is None:
                cursor.execute(f"INSERT INTO {CONFIG_TABLE} (config) VALUES (%s)", [wanted])
            elif previous != wanted:
                cursor.execute(
                    f"UPDATE {CONFIG_TABLE} SET config = %s, rebuilding_from = %s", [wanted, previous]
                )
    done = _make_terms_again(wanted, progress, batch)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {CONFIG_TABLE} SET rebuilding_from = NULL")
    return Rebuild(wanted, previous, done, time.monotonic() - started)


def _make_terms_again(config: str, progress, batch: int) -> int:
    """Terms by `config` for every chunk without them or with another configuration's.

    A batch skips the chunks a worker is writing (SKIP LOCKED: waiting for one another's
    locks in different orders could deadlock); the worker's own triggers give them terms, by
    the configuration its statement read. Passes repeat until no chunk is left with other
    terms, which also catches a write whose statement read the old configuration.
    """
    total = _stale_chunks(config)
    done = 0
    if progress is not None:
        progress(done, total)
    for _ in range(MAX_PASSES):
        after = 0
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_REBUILD_BATCH, {"config": config, "after": after, "batch": batch})
                ids = [chunk_id for (chunk_id,) in cursor.fetchall()]
            if not ids:
                break
            done, after = done + len(ids), max(ids)
            if progress is not None:
                progress(min(done, total), total)
        if _stale_chunks(config) == 0:
            return done
        time.sleep(PASS_PAUSE_SECONDS)
    raise KeywordIndexError(
        f"Chunks kept being written with another configuration than {config!r} through {MAX_PASSES} passes; "
        "run rebuild_search_index again."
    )


def _stale_chunks(config: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_STALE_COUNT, [config])
        return cursor.fetchone()[0]


MAX_PASSES = 5
PASS_PAUSE_SECONDS = 0.5
_STALE_COUNT = f"""
SELECT count(*) FROM document_embeddings e
 WHERE NOT EXISTS (SELECT 1 FROM {ChunkTerms._meta.db_table} t WHERE t.embedding_id = e.id AND t.config = %s)"""
# One batch: the next chunks (by id) whose terms are missing or another configuration's. FOR
# SHARE: a chunk deleted meanwhile is not given terms (its foreign key would fail).
_REBUILD_BATCH = f"""
WITH batch AS (
    SELECT e.id, e.document_id, e.model, e.source_text, d.title
      FROM document_embeddings e LEFT JOIN source_documents d ON d.id = e.document_id
     WHERE e.id > %(after)s
       AND NOT EXISTS (SELECT 1 FROM {ChunkTerms._meta.db_table} t WHERE t.embedding_id = e.id AND t.config = %(config)s)
     ORDER BY e.id
     LIMIT %(batch)s
       FOR SHARE OF e SKIP LOCKED
)
INSERT INTO {ChunkTerms._meta.db_table} AS t (embedding_id, document_id, model, config, terms)
SELECT id, document_id, model, %(config)s, sidecar_chunk_terms(%(config)s::regconfig, title, source_text) FROM batch
ON CONFLICT (embedding_id) DO UPDATE SET config = EXCLUDED.config, terms = EXCLUDED.terms
RETURNING embedding_id"""


def remake_all_terms(batch: int = 5_000, progress=None) -> int:
    """Every chunk's terms made again with its own configuration, in batches by id (each its
    own transaction, so workers writing meanwhile wait at most one batch): for a change of
    what the terms are made of (documents migration 0014: the title joined them)."""
    done = after = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_REMAKE_BATCH, {"after": after, "batch": batch})
            ids = [chunk_id for (chunk_id,) in cursor.fetchall()]
        if not ids:
            return done
        done, after = done + len(ids), max(ids)
        if progress is not None:
            progress(done)


_REMAKE_BATCH = f"""
WITH batch AS (
    SELECT t.embedding_id FROM {ChunkTerms._meta.db_table} t
     WHERE t.embedding_id > %(after)s ORDER BY t.embedding_id LIMIT %(batch)s
)
UPDATE {ChunkTerms._meta.db_table} t
   SET terms = sidecar_chunk_terms(t.config::regconfig, d.title, e.source_text)
  FROM batch b, document_embeddings e LEFT JOIN source_documents d ON d.id = e.document_id
 WHERE t.embedding_id = b.embedding_id AND e.id = t.embedding_id
RETURNING t.embedding_id"""
