"""The vector index policy: one HNSW index per model, built in bulk when it pays.

An HNSW index makes a search over many chunks fast, and makes every chunk written into it
slow: pgvector inserts each row into the graph, about 2 ms of PostgreSQL CPU a vector against
0.05 ms without the index (`python -m bench index`). Building the graph once over rows already
there is several times cheaper than inserting them one by one. So:

- a model with fewer than VECTOR_INDEX_MIN_ROWS chunks has no index; search reads its chunks
  exactly, which at that size is within the search latency target, and finds the true nearest;
- past that, the model gets its own index (partial: `WHERE model = '…'`), built
  CONCURRENTLY (writers carry on) with VECTOR_INDEX_BUILD_MEMORY_MB and parallel maintenance
  workers, by `manage.py vector_index build`, which the `maintain` schedule starts in its own
  process (a build can outlast any task timeout);
- a model being filled by a bulk write waits for its index until the write is done: during
  a model change (a previous model still serves search) until its queue is drained; a model
  that serves search itself once it holds at least as many chunks as are still queued;
- search switches to a new model when it covers every document *and* its index is ready
  (`queue_admin.searching.choose_provider`).

A build that dies (the process killed, the server restarted) leaves an INVALID index, which
PostgreSQL keeps maintaining but never reads; the next build drops it first. Two builders never
run at once: a build holds a session advisory lock for its model.

All of the index SQL is here; nothing else names the indexes.
"""

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils.translation import gettext as _

logger = logging.getLogger("sidecar.vector_index")

TABLE = "document_embeddings"
PREFIX = "document_embeddings_hnsw_"
# The graph's shape (pgvector's m and ef_construction): recall@10 0.994 at ef_search 100 on
# MiniLM-shaped vectors, measured with the build cost in `python -m bench search`.
M = 16
EF_CONSTRUCTION = 128
# The graph holds the vectors as halfvec (16-bit floats; an expression index, the column stays
# vector): measured against a vector index on the same 100,000 vectors (`python -m bench
# search`), it is about half the size, cheaper to write into and as good at recall, and it can
# index up to 4,000 dimensions where vector stops at 2,000. Search orders by the same expression
# to use it, and scores by the full vectors.
OPCLASS = "halfvec_cosine_ops"
MAX_INDEXED_DIMENSIONS = 4_000  # pgvector's limit for an HNSW index over halfvec


def indexed_column() -> str:
    return f"(embedding::halfvec({settings.EMBEDDING_DIMENSIONS}))"


def nearest_order(vector_sql: str) -> str:
    """The ORDER BY expression that the index serves: the distance of the halfvec casts of the
    column and of `vector_sql` (an SQL expression of type vector)."""
    dimensions = settings.EMBEDDING_DIMENSIONS
    return f"e.embedding::halfvec({dimensions}) <=> ({vector_sql})::halfvec({dimensions})"


def indexable() -> bool:
    return settings.EMBEDDING_DIMENSIONS <= MAX_INDEXED_DIMENSIONS


# pg_advisory_lock's first key: "sidecar vector index" (the second is the model's hash).
LOCK_NAMESPACE = 0x5EC1DE


def index_name(model: str) -> str:
    """The model's index: a hash, since a model id may hold any characters and be long."""
    return PREFIX + hashlib.md5(model.encode()).hexdigest()[:16]


def _lock_key(model: str) -> int:
    return int(hashlib.md5(model.encode()).hexdigest()[:7], 16)


@dataclass(frozen=True)
class IndexState:
    """What one model's index is: "ready", "building" (with its phase and share done),
    "broken" (a build that died: invalid and nobody building), or "none"."""

    model: str
    name: str
    state: str
    chunks: int  # counted up to `counted_to`: "at least" when equal
    counted_to: int
    phase: str = ""
    done: float | None = None  # 0..1 in the current phase, where PostgreSQL reports it
    size_bytes: int | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def describe(self) -> str:
        count = _("%(chunks)s chunks") % {
            "chunks": f"{self.chunks:,}{'+' if self.chunks >= self.counted_to else ''}"
        }
        if self.state == "ready":
            return _("HNSW index ready (%(count)s, %(size)s MiB): search uses it") % {
                "count": count,
                "size": f"{self.size_bytes / 2**20:.0f}",
            }
        if self.state == "building":
            share = f", {self.done:.0%}" if self.done is not None else ""
            return _("HNSW index building (%(phase)s%(share)s); search reads %(count)s exactly") % {
                "phase": self.phase or _("starting"),
                "share": share,
                "count": count,
            }
        if self.state == "broken":
            return _(
                "HNSW index build failed or was stopped; search reads %(count)s exactly until it is rebuilt"
            ) % {"count": count}
        if not indexable():
            return _(
                "no HNSW index: %(dimensions)s dimensions, over the %(most)s an index can hold; "
                "search reads %(count)s exactly"
            ) % {
                "dimensions": settings.EMBEDDING_DIMENSIONS,
                "most": f"{MAX_INDEXED_DIMENSIONS:,}",
                "count": count,
            }
        if self.due:
            return _(
                "no HNSW index yet (%(count)s): one is due; search reads them exactly until it is built"
            ) % {"count": count}
        return _("no HNSW index (%(count)s, under %(least)s): search reads them exactly") % {
            "count": count,
            "least": f"{settings.VECTOR_INDEX_MIN_ROWS:,}",
        }

    @property
    def due(self) -> bool:
        """Past the threshold without a usable index (a build may wait for a bulk write)."""
        return (
            indexable() and self.state in ("none", "broken") and self.chunks >= settings.VECTOR_INDEX_MIN_ROWS
        )


def count_chunks(model: str, up_to: int) -> int:
    """The model's chunks, counted through the (model, document) index no further than `up_to`."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT FROM {TABLE} WHERE model = %s LIMIT %s) chunks", [model, up_to]
        )
        return cursor.fetchone()[0]


# How far `state` counts a model's chunks: "100,000+" beyond (an index-only scan of this many
# entries takes about 10 ms; /readyz and the dashboard ask often).
STATE_COUNT_CAP = 100_000


def state(model: str) -> IndexState:
    """The model's index as the catalog and pg_stat_progress_create_index see it now."""
    name = index_name(model)
    counted_to = max(STATE_COUNT_CAP, settings.VECTOR_INDEX_MIN_ROWS)
    chunks = count_chunks(model, counted_to)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT i.indisvalid, pg_relation_size(i.indexrelid),
                      p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total,
                      pg_try_advisory_lock(%s, %s) AS free
                 FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
                 LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = c.oid
                WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace""",
            [LOCK_NAMESPACE, _lock_key(model), name],
        )
        row = cursor.fetchone()
        if row is not None and row[7]:
            # Only asked whether someone holds it: give it straight back.
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, _lock_key(model)])
    if row is None:
        return IndexState(model, name, "none", chunks, counted_to)
    valid, size, phase, blocks_done, blocks_total, tuples_done, tuples_total, free = row
    if valid:
        return IndexState(model, name, "ready", chunks, counted_to, size_bytes=size)
    if phase is None and free:
        return IndexState(model, name, "broken", chunks, counted_to)
    done = None
    if tuples_total:
        done = tuples_done / tuples_total
    elif blocks_total:
        done = blocks_done / blocks_total
    return IndexState(model, name, "building", chunks, counted_to, phase or "", done)


# Whether the index named by the parameter can be read (a catalog lookup; search runs it inside
# the statement that sets up its transaction, so it costs no round trip).
USABLE_INDEX = """SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
                   WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace"""


def has_usable_index(model: str) -> bool:
    """Whether search can read the model's chunks through an index."""
    with connection.cursor() as cursor:
        cursor.execute(USABLE_INDEX, [index_name(model)])
        row = cursor.fetchone()
    return bool(row and row[0])


def ready_to_serve(model: str) -> bool:
    """Whether search may switch to `model`: its index is ready, or it is small enough to
    need none."""
    return has_usable_index(model) or count_chunks(model, settings.VECTOR_INDEX_MIN_ROWS) < (
        settings.VECTOR_INDEX_MIN_ROWS
    )


def wants_index(model: str, *, queued: int, serving: bool) -> bool:
    """The policy (see the module's docstring): whether `model`'s index should be built now,
    given the documents still `queued` for it and whether it is the model search uses."""
    if not indexable() or has_usable_index(model):
        return False
    chunks = count_chunks(model, max(settings.VECTOR_INDEX_MIN_ROWS, queued))
    if chunks < settings.VECTOR_INDEX_MIN_ROWS:
        return False
    if serving:
        return chunks >= queued  # at least half written: build now rather than insert the rest row by row
    return queued == 0  # filled behind search's back: one build at the end


class BuildBusy(Exception):
    """Another process is building this model's index."""


class NotIndexable(Exception):
    """The vectors have more dimensions than an HNSW index can hold."""


def build(model: str, *, concurrently: bool = True) -> float:
    """Build `model`'s index, CONCURRENTLY; returns the seconds it took. Drops a broken one
    left by a build that died. Runs in autocommit (CREATE INDEX CONCURRENTLY cannot run in a
    transaction); raises BuildBusy when another process holds the model's build lock.
    `concurrently=False` builds inside the current transaction, blocking the table's writers:
    for a table nobody else writes (a benchmark's, a test's)."""
    import time

    if not indexable():
        raise NotIndexable(
            f"EMBEDDING_DIMENSIONS is {settings.EMBEDDING_DIMENSIONS}: an HNSW index holds at most "
            f"{MAX_INDEXED_DIMENSIONS:,} dimensions, so search reads every chunk exactly"
        )
    name = index_name(model)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, _lock_key(model)])
        if not cursor.fetchone()[0]:
            raise BuildBusy(f"the index of {model} is being built by another process")
        try:
            if has_usable_index(model):
                return 0.0
            started = time.monotonic()
            how = "CONCURRENTLY " if concurrently else ""
            cursor.execute(f"DROP INDEX {how}IF EXISTS {name}")
            # Session settings, for this build only: more memory keeps the graph in memory
            # while it is built (much faster); parallel workers share the work.
            cursor.execute(
                "SELECT set_config('maintenance_work_mem', %s, false),"
                " set_config('max_parallel_maintenance_workers', %s, false)",
                [f"{settings.VECTOR_INDEX_BUILD_MEMORY_MB}MB", str(settings.VECTOR_INDEX_BUILD_WORKERS)],
            )
            logger.info("building the HNSW index of %s (%s)", model, name)
            # The model is a literal, not a parameter: the predicate must be a constant for the
            # planner to match `WHERE model = '…'` in search's query to this index.
            cursor.execute(
                f"CREATE INDEX {how}{name} ON {TABLE} USING hnsw ({indexed_column()} {OPCLASS})"
                f" WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})"
                f" WHERE model = {_literal(cursor, model)}"
            )
            seconds = time.monotonic() - started
            logger.info("built the HNSW index of %s in %.1f s", model, seconds)
            return seconds
        finally:
            cursor.execute("RESET maintenance_work_mem; RESET max_parallel_maintenance_workers")
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, _lock_key(model)])


def drop(model: str) -> bool:
    """Drop `model`'s index (CONCURRENTLY); whether there was one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_class WHERE relname = %s AND relnamespace = current_schema()::regnamespace",
            [index_name(model)],
        )
        existed = cursor.fetchone() is not None
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(model)}")
    return existed


def _literal(cursor, value: str) -> str:
    """`value` as an SQL string literal, quoted by PostgreSQL itself."""
    cursor.execute("SELECT quote_literal(%s)", [value])
    return cursor.fetchone()[0]
