"""Every statement that reads or writes the queue's claim and lease columns.

Nothing else in the project writes `status`, `worker_id`, `batch_id` or `lease_expires_at`
of `embedding_queue` (the enqueue triggers only insert items and cancel live ones). Each write
after the claim is compare-and-set on (id, worker_id, status = 'processing') and returns the
rows it changed, so a worker whose lease was taken over, or whose item was cancelled or
deleted meanwhile, learns that it no longer owns the item and drops its work.

Times come from the database's clock, as `statement_timestamp()` (what Django's `Now()` uses
too): never a worker's clock, and never `now()`, which inside a longer transaction is the
transaction's start and would hide work queued since.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from queue_admin.vocabulary import CLAIMABLE, LIVE, RETRYABLE, sql_list

# Waiting this long adds one point of priority weight, so low-priority work never starves:
# with weights 3/2/1, a low item that has waited ten minutes ranks with a fresh high one.
AGEING_SECONDS_PER_POINT = 300

# The status lists the SQL below filters by, from the one vocabulary.
_LIVE, _CLAIMABLE, _RETRYABLE = sql_list(LIVE), sql_list(CLAIMABLE), sql_list(RETRYABLE)


@dataclass(frozen=True)
class ClaimedItem:
    id: uuid.UUID
    document_id: uuid.UUID
    priority: str
    retry_count: int
    max_retries: int
    force: bool  # embed even if the sidecar already holds this text


# One statement. Each priority's oldest claimable rows come from the partial index
# (status, priority, next_attempt_at) and are locked with SKIP LOCKED, so concurrent workers
# never wait on each other or take the same row; then the best `limit` by weight plus age win.
# rate_limited items whose Retry-After has passed are claimable again: "back to pending by
# itself" needs no sweeper.
CLAIM_BATCH = f"""
WITH high AS (
    SELECT id, priority, next_attempt_at FROM embedding_queue
     WHERE status IN ({_CLAIMABLE}) AND priority = 'high' AND next_attempt_at <= statement_timestamp()
     ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), medium AS (
    SELECT id, priority, next_attempt_at FROM embedding_queue
     WHERE status IN ({_CLAIMABLE}) AND priority = 'medium' AND next_attempt_at <= statement_timestamp()
     ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), low AS (
    SELECT id, priority, next_attempt_at FROM embedding_queue
     WHERE status IN ({_CLAIMABLE}) AND priority = 'low' AND next_attempt_at <= statement_timestamp()
     ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM high UNION ALL SELECT * FROM medium UNION ALL SELECT * FROM low) c
     ORDER BY CASE priority WHEN 'high' THEN %(w_high)s WHEN 'medium' THEN %(w_medium)s ELSE %(w_low)s END
              + extract(epoch FROM statement_timestamp() - next_attempt_at) / %(ageing)s DESC,
              next_attempt_at
     LIMIT %(limit)s
)
UPDATE embedding_queue q
   SET status = 'processing', worker_id = %(worker_id)s, batch_id = %(batch_id)s,
       lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_seconds)s),
       processing_started_at = statement_timestamp(), processing_completed_at = NULL, updated_at = statement_timestamp()
  FROM chosen
 WHERE q.id = chosen.id
RETURNING q.id, q.document_id, q.priority, q.retry_count, q.max_retries, coalesce((q.metadata ->> 'force')::boolean, false)
"""


def claim_batch(
    worker_id: str, limit: int, *, lease_seconds: int, weights: dict[str, int]
) -> tuple[uuid.UUID, list[ClaimedItem]]:
    """Claim up to `limit` items for `worker_id`; returns (batch_id, items), items may be empty."""
    batch_id = uuid.uuid4()
    params = {
        "limit": limit,
        "worker_id": worker_id,
        "batch_id": batch_id,
        "lease_seconds": lease_seconds,
        "ageing": AGEING_SECONDS_PER_POINT,
        "w_high": weights["high"],
        "w_medium": weights["medium"],
        "w_low": weights["low"],
    }
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_BATCH, params)
        return batch_id, [ClaimedItem(*row) for row in cursor.fetchall()]


def claim_documents(
    document_ids: list[uuid.UUID], worker_id: str, *, lease_seconds: int
) -> tuple[uuid.UUID, int]:
    """Claim the claimable items of these documents for `worker_id` (a provider batch, which
    takes what a backfill chose rather than the queue's best); returns (batch_id, claimed).
    Items a worker holds already are left to it."""
    batch_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH chosen AS (
                   SELECT id FROM embedding_queue
                    WHERE document_id = ANY(%(documents)s::uuid[]) AND status IN ({_CLAIMABLE})
                      FOR UPDATE SKIP LOCKED
               )
               UPDATE embedding_queue q
                  SET status = 'processing', worker_id = %(worker_id)s, batch_id = %(batch_id)s,
                      lease_expires_at = statement_timestamp() + make_interval(secs => %(lease_seconds)s),
                      processing_started_at = statement_timestamp(), processing_completed_at = NULL,
                      updated_at = statement_timestamp()
                 FROM chosen WHERE q.id = chosen.id""",
            {"documents": list(document_ids), "worker_id": worker_id, "batch_id": batch_id,
             "lease_seconds": lease_seconds},
        )  # fmt: skip
        return batch_id, cursor.rowcount


def held_by(worker_id: str, limit: int | None = None) -> list[ClaimedItem]:
    """The items `worker_id` holds now (a provider batch's, read back after a restart)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT id, document_id, priority, retry_count, max_retries,
                      coalesce((metadata ->> 'force')::boolean, false)
                 FROM embedding_queue WHERE worker_id = %s AND status = 'processing'
                ORDER BY id LIMIT %s""",
            [worker_id, limit],
        )
        return [ClaimedItem(*row) for row in cursor.fetchall()]


def hand_over(item_ids: list[uuid.UUID], from_worker: str, to_worker: str) -> int:
    """Move held items from one holder to another (a provider batch too big for one file
    gives its surplus to the next), lease unchanged; returns how many moved."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue SET worker_id = %s, updated_at = statement_timestamp()
                WHERE id = ANY(%s) AND worker_id = %s AND status = 'processing'""",
            [to_worker, list(item_ids), from_worker],
        )
        return cursor.rowcount


def heartbeat(worker_id: str, lease_seconds: int) -> int:
    """Extend the leases of what `worker_id` holds; returns how many were extended.

    SKIP LOCKED: the rows the worker's own writer is completing are locked by its write
    transaction. Waiting for them while holding the others deadlocked with that write (each
    locking the batch's rows in its own order; PostgreSQL then aborted the write and the batch
    was embedded again). Those rows are finishing anyway; any that are not get the next beat,
    well within the lease.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue q
                  SET lease_expires_at = statement_timestamp() + make_interval(secs => %s), updated_at = statement_timestamp()
                 FROM (SELECT id FROM embedding_queue WHERE worker_id = %s AND status = 'processing'
                          FOR UPDATE SKIP LOCKED) held
                WHERE q.id = held.id""",
            [lease_seconds, worker_id],
        )
        return cursor.rowcount


def extend_lease(worker_id: str, lease_seconds: int) -> int:
    """Extend the lease of every item `worker_id` holds, waiting for any row locked meanwhile
    (a provider batch going to the provider: no writer of its own holds its rows); returns how
    many."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue
                  SET lease_expires_at = statement_timestamp() + make_interval(secs => %s), updated_at = statement_timestamp()
                WHERE worker_id = %s AND status = 'processing'""",
            [lease_seconds, worker_id],
        )
        return cursor.rowcount


def complete(
    item_ids: list[uuid.UUID], worker_id: str, actual_tokens: dict[uuid.UUID, int]
) -> set[uuid.UUID]:
    """Mark items done. Returns the ids this worker still owned, i.e. the ones completed.

    Call inside the transaction that writes the chunks: a lost item must roll the chunks back.
    """
    if not item_ids:
        return set()
    tokens = [actual_tokens.get(item_id, 0) for item_id in item_ids]
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue q
                  SET status = 'completed', processing_completed_at = statement_timestamp(), lease_expires_at = NULL,
                      actual_tokens = t.tokens, error_kind = '', error_message = '', updated_at = statement_timestamp()
                 FROM unnest(%s::uuid[], %s::integer[]) AS t(id, tokens)
                WHERE q.id = t.id AND q.worker_id = %s AND q.status = 'processing'
            RETURNING q.id""",
            [item_ids, tokens, worker_id],
        )
        return {row[0] for row in cursor.fetchall()}


def retry_later(
    item_id: uuid.UUID, worker_id: str, *, delay_seconds: float, kind: str, message: str
) -> str | None:
    """A transient failure: back to pending after `delay_seconds`, or `failed` once the item
    has used its retries. Returns the new status, or None if the worker no longer owned it."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue
                  SET status = CASE WHEN retry_count + 1 > max_retries THEN 'failed' ELSE 'pending' END,
                      retry_count = retry_count + 1,
                      next_attempt_at = statement_timestamp() + make_interval(secs => %s),
                      error_kind = %s, error_message = %s,
                      worker_id = '', lease_expires_at = NULL, updated_at = statement_timestamp()
                WHERE id = %s AND worker_id = %s AND status = 'processing'
            RETURNING status""",
            [delay_seconds, kind, message[:4000], item_id, worker_id],
        )
        row = cursor.fetchone()
        return row[0] if row else None


def fail(item_id: uuid.UUID, worker_id: str, *, kind: str, message: str) -> bool:
    """A permanent failure: straight to `failed`, the dead-letter list, with kind and message."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue
                  SET status = 'failed', retry_count = retry_count + 1, error_kind = %s, error_message = %s,
                      worker_id = '', lease_expires_at = NULL, processing_completed_at = statement_timestamp(),
                      updated_at = statement_timestamp()
                WHERE id = %s AND worker_id = %s AND status = 'processing'""",
            [kind, message[:4000], item_id, worker_id],
        )
        return cursor.rowcount == 1


def mark_rate_limited(item_ids: list[uuid.UUID], worker_id: str, *, until: datetime, message: str) -> int:
    """The provider said 429: wait until `until` (its Retry-After); not counted as an attempt."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue
                  SET status = 'rate_limited', next_attempt_at = %s, error_kind = 'rate_limited',
                      error_message = %s,
                      rate_limit_delay_ms = greatest(0, extract(epoch FROM %s - statement_timestamp()) * 1000)::integer,
                      worker_id = '', lease_expires_at = NULL, updated_at = statement_timestamp()
                WHERE id = ANY(%s) AND worker_id = %s AND status = 'processing'""",
            [until, message[:4000], until, list(item_ids), worker_id],
        )
        return cursor.rowcount


def release(item_ids: list[uuid.UUID], worker_id: str) -> int:
    """Give back claimed items not yet started (graceful shutdown, or the text changed in
    flight): pending again at once, no attempt counted."""
    if not item_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue
                  SET status = 'pending', next_attempt_at = statement_timestamp(), worker_id = '', batch_id = NULL,
                      lease_expires_at = NULL, updated_at = statement_timestamp()
                WHERE id = ANY(%s) AND worker_id = %s AND status = 'processing'""",
            [list(item_ids), worker_id],
        )
        return cursor.rowcount


def reclaim_expired_leases(item_ids: list[uuid.UUID] | None = None) -> tuple[int, int]:
    """Take back items whose worker stopped renewing its lease (killed, hung, partitioned):
    all of them (the workers' periodic sweep), or only `item_ids` (the admin's "Stuck" list).

    Each counts as an attempt, so a document that kills its worker every time ends up in the
    dead-letter list instead of taking workers down forever. Returns (requeued, failed).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH expired AS (
                   SELECT id FROM embedding_queue
                    WHERE status = 'processing' AND lease_expires_at < statement_timestamp()
                      AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
                    FOR UPDATE SKIP LOCKED
               )
               UPDATE embedding_queue q
                  SET status = CASE WHEN q.retry_count + 1 > q.max_retries THEN 'failed' ELSE 'pending' END,
                      retry_count = q.retry_count + 1, next_attempt_at = statement_timestamp(),
                      error_kind = 'transient',
                      error_message = 'lease expired: worker ' || q.worker_id || ' stopped renewing it',
                      worker_id = '', lease_expires_at = NULL, updated_at = statement_timestamp()
                 FROM expired WHERE q.id = expired.id
            RETURNING q.status""",
            {"ids": None if item_ids is None else list(item_ids)},
        )
        statuses = [row[0] for row in cursor.fetchall()]
    return statuses.count("pending"), statuses.count("failed")


# --- What people do from the admin (or a command): retry, cancel, raise priority ----------
# These change items no worker may be holding (retry), or take them from whoever holds them
# (cancel): a worker that held a cancelled item finds its compare-and-set above matches
# nothing and drops the work, rolling back any chunks it was about to write.


def retry_items(item_ids: list[uuid.UUID]) -> int:
    """Failed or cancelled items back to `pending`, due now, attempts and error reset.

    A document keeps at most one live item (the partial unique index), so an item is skipped
    when its document already has a live one (that item will embed the current text anyway),
    and of several selected items of one document only the newest is retried. Returns how many
    were retried. A trigger that queues the same document between the check and the update
    makes this raise IntegrityError (the unique index holds); run it again to skip that one.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH candidates AS (
                   SELECT id, document_id, created_at FROM embedding_queue
                    WHERE id = ANY(%s) AND status IN ({_RETRYABLE})
                      FOR UPDATE SKIP LOCKED
               ), chosen AS (
                   SELECT DISTINCT ON (c.document_id) c.id FROM candidates c
                    WHERE NOT EXISTS (SELECT 1 FROM embedding_queue live
                                       WHERE live.document_id = c.document_id
                                         AND live.status IN ({_LIVE}))
                    ORDER BY c.document_id, c.created_at DESC
               )
               UPDATE embedding_queue q
                  SET status = 'pending', retry_count = 0, next_attempt_at = statement_timestamp(),
                      error_kind = '', error_message = '', worker_id = '', batch_id = NULL,
                      lease_expires_at = NULL, processing_started_at = NULL, processing_completed_at = NULL,
                      updated_at = statement_timestamp()
                 FROM chosen WHERE q.id = chosen.id""",
            [list(item_ids)],
        )
        return cursor.rowcount


def cancel_items(item_ids: list[uuid.UUID], reason: str) -> int:
    """Live items (pending, processing, rate-limited) to `cancelled`, with `reason` as their
    message. Returns how many were cancelled; finished items are left as they are."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE embedding_queue
                  SET status = 'cancelled', error_kind = '', error_message = %s,
                      lease_expires_at = NULL, processing_completed_at = statement_timestamp(),
                      updated_at = statement_timestamp()
                WHERE id = ANY(%s) AND status IN ({_LIVE})""",
            [reason[:4000], list(item_ids)],
        )
        return cursor.rowcount


def raise_priority(item_ids: list[uuid.UUID], priority: str = "high") -> int:
    """Live items waiting to be claimed (pending, rate-limited) to `priority`, never lowering
    one. Items already processing are left alone: their batch is in hand. Returns how many
    changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE embedding_queue
                  SET priority = %s, updated_at = statement_timestamp()
                WHERE id = ANY(%s) AND status IN ({_CLAIMABLE})
                  AND sidecar_priority_rank(priority) < sidecar_priority_rank(%s)""",
            [priority, list(item_ids), priority],
        )
        return cursor.rowcount
