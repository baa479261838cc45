"""Finding documents whose embeddings are missing or stale, and queueing them — set-based.

Used by `manage.py backfill`, by the reconciliation schedule (which catches writes that
bypassed the triggers: logical replication applies rows with triggers off by default, or a
trigger disabled during a bulk load) and by the admin's backfill button. Every query here is
one statement over the whole table: no Python loop per row.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, connections
from django.utils.translation import gettext, ngettext

from queue_admin.document_state import (
    SQL_ANY_CHUNK,
    SQL_BLANK,
    SQL_CURRENT,
    SQL_HELD,
    SQL_LIVE_ITEM,
)
from queue_admin.vocabulary import LIVE, sql_list

logger = logging.getLogger("sidecar.backfill")

MISSING, STALE, MISSING_OR_STALE, ALL = "missing", "stale", "missing_or_stale", "all"

_CONDITIONS = {
    # never embedded, by any model
    MISSING: f"NOT {SQL_ANY_CHUNK}",
    # embedded, but from another text or by another model (EMBEDDING_MODEL changed)
    STALE: f"{SQL_ANY_CHUNK} AND NOT {SQL_CURRENT}",
    MISSING_OR_STALE: f"NOT {SQL_CURRENT}",
    ALL: "true",
}


@dataclass(frozen=True)
class Selection:
    documents: int
    estimated_tokens: int
    # Matching documents left out because they are held for a person (newest item failed or
    # cancelled); 0 when they were included.
    held_back: int = 0
    # Selected documents longer than EMBEDDING_MAX_DOCUMENT_CHARACTERS: the workers fail them
    # at once, so queueing them again only fails them again.
    too_long: int = 0


@dataclass(frozen=True)
class Estimate:
    """What queueing a selection would take: time at the recent rate, cost at the set price."""

    selection: Selection
    rate_per_second: float | None  # documents completed per second over the last 15 minutes
    tokens_per_second: float | None  # the same pace in tokens (documents differ in length)
    seconds: float | None  # None without a recent rate to go by
    price_per_million_tokens: float  # 0 when EMBEDDING_PRICE_PER_MILLION_TOKENS is unset
    cost: float | None  # None without a price

    @property
    def minutes(self) -> float | None:
        return None if self.seconds is None else self.seconds / 60

    @property
    def max_document_characters(self) -> int:
        return settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS

    @property
    def time_in_words(self) -> str | None:
        """ "under a minute", "about 12 minutes", "about 3 hours", "about 2 days"; None unknown."""
        return None if self.seconds is None else duration_in_words(self.seconds)


def duration_in_words(seconds: float) -> str:
    if seconds < 60:
        return gettext("under a minute")
    minutes = round(seconds / 60)
    if seconds / 60 < 90:
        return ngettext("about %(n)s minute", "about %(n)s minutes", minutes) % {"n": minutes}
    hours = round(seconds / 3600)
    if seconds / 3600 < 36:
        return ngettext("about %(n)s hour", "about %(n)s hours", hours) % {"n": hours}
    days = round(seconds / 86400)
    return ngettext("about %(n)s day", "about %(n)s days", days) % {"n": days}


def estimate(selection: Selection) -> Estimate:
    """Time and cost for `selection`, from the last 15 minutes' pace and the configured price
    (the same figures for `backfill --dry-run` and the admin's backfill page). The time goes by
    tokens, not documents: the recent pace in documents a second × the recent documents'
    average tokens gives tokens a second, and the selection's tokens ÷ that is the time — so a
    selection of long documents is not promised at the pace of short ones."""
    rate = recent_rate()
    tokens_per_document = recent_tokens_per_document()
    tokens_rate = rate * tokens_per_document if rate and tokens_per_document else None
    price = settings.EMBEDDING_PRICE_PER_MILLION_TOKENS
    if tokens_rate:
        seconds = selection.estimated_tokens / tokens_rate
    else:
        seconds = selection.documents / rate if rate else None
    return Estimate(
        selection,
        rate_per_second=rate,
        tokens_per_second=tokens_rate,
        seconds=seconds,
        price_per_million_tokens=price,
        cost=selection.estimated_tokens / 1_000_000 * price if price else None,
    )


# The documents completed lately that the average length is read from (enough for an average,
# and cheap however many there were).
RECENT_SAMPLE = 1_000


def recent_tokens_per_document(minutes: int = 15) -> float | None:
    """Average estimated tokens of (up to RECENT_SAMPLE of) the documents completed lately."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT avg(sidecar_estimated_tokens(d.content)) FROM
                 (SELECT document_id FROM embedding_queue
                   WHERE status = 'completed'
                     AND processing_completed_at > statement_timestamp() - make_interval(mins => %s)
                   ORDER BY processing_completed_at DESC LIMIT %s) q
                 JOIN source_documents d ON d.id = q.document_id""",
            [minutes, RECENT_SAMPLE],
        )
        value = cursor.fetchone()[0]
    return float(value) if value else None


# A paused source's documents are not queued by machine (reconciliation, backfill) either.
SQL_SOURCE_ENABLED = "EXISTS (SELECT 1 FROM document_sources s WHERE s.id = d.source_id AND s.enabled)"


def _where(kind: str, *, skip_live: bool, include_held: bool, source_id: int | None = None) -> str:
    clauses = [f"NOT {SQL_BLANK}", _CONDITIONS[kind], SQL_SOURCE_ENABLED]
    if source_id is not None:
        clauses.append(f"d.source_id = {int(source_id)}")
    if skip_live:
        clauses.append(f"NOT {SQL_LIVE_ITEM}")
    if not include_held:
        clauses.append(f"NOT {SQL_HELD}")
    return " AND ".join(clauses)


def count(
    kind: str,
    model: str,
    *,
    limit: int | None = None,
    skip_live: bool = False,
    include_held: bool = False,
    source_id: int | None = None,
) -> Selection:
    """How many documents match, roughly how many tokens they hold (`sidecar_estimated_tokens`), and how
    many matching ones are left out as held for a person (unless `include_held`)."""
    params = {"model": model, "limit": limit, "too_long": settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT count(*), coalesce(sum(sidecar_estimated_tokens(content)), 0),
                       count(*) FILTER (WHERE length(content) > %(too_long)s)
                  FROM (SELECT d.content FROM source_documents d
                         WHERE {_where(kind, skip_live=skip_live, include_held=include_held, source_id=source_id)}
                        LIMIT %(limit)s) picked""",
            params,
        )
        documents, tokens, too_long = cursor.fetchone()
        held_back = 0
        if not include_held:
            cursor.execute(
                f"""SELECT count(*) FROM source_documents d
                     WHERE {_where(kind, skip_live=skip_live, include_held=True, source_id=source_id)}
                       AND {SQL_HELD}""",
                params,
            )
            held_back = cursor.fetchone()[0]
    return Selection(documents, int(tokens), held_back, too_long)


def enqueue(
    kind: str,
    model: str,
    *,
    priority: str,
    limit: int | None = None,
    skip_live: bool = False,
    include_held: bool = False,
    sessions: int = 1,
    source_id: int | None = None,
) -> int:
    """Queue the matching documents at `priority` (forced for ALL); returns items queued or raised.
    Documents held for a person (newest item failed or cancelled) only with `include_held`.

    `sessions` > 1 splits the documents into that many disjoint parts (by a byte of the id)
    queued at once, each by one statement in its own database session: queueing is
    PostgreSQL's per-row insert work (the queue row, its indexes, the live-item check), and
    one statement runs on one core (1,000,000 documents: about 20 s of one backend's CPU;
    `python -m bench backfill`). The parts commit apart: an error in one leaves the others'
    items queued, and running it again queues only the rest (live items are coalesced).
    With `limit` it is one statement, so that the limit is exact.
    """
    where = _where(kind, skip_live=skip_live, include_held=include_held, source_id=source_id)
    if sessions <= 1 or limit is not None:
        return _enqueue_part(where, kind, model, priority, limit)
    with ThreadPoolExecutor(sessions, thread_name_prefix="backfill") as pool:
        parts = [
            pool.submit(_enqueue_in_own_session, where, kind, model, priority, (part, sessions))
            for part in range(sessions)
        ]
        errors = [part.exception() for part in parts]
    queued = sum(part.result() for part, error in zip(parts, errors, strict=True) if error is None)
    failed = [error for error in errors if error is not None]
    if failed:
        raise PartlyQueued(queued, len(failed), sessions, failed[0]) from failed[0]
    return queued


def enqueue_and_list(
    kind: str,
    model: str,
    *,
    priority: str,
    limit: int | None = None,
    include_held: bool = False,
    source_id: int | None = None,
) -> list:
    """Queue the matching documents as `enqueue` does, in one statement, and return their ids
    (for a provider batch, which claims exactly those). Call inside a transaction."""
    where = _where(kind, skip_live=False, include_held=include_held, source_id=source_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id FROM source_documents d WHERE {where} ORDER BY d.id LIMIT %(limit)s",
            {"model": model, "limit": limit},
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT sidecar_enqueue(%s::uuid[], %s, %s)", [ids, priority, kind == ALL])
    return ids


class PartlyQueued(Exception):
    """Some parts of a parallel enqueue failed; the others' items are queued."""

    def __init__(self, queued: int, failed_parts: int, parts: int, error: BaseException):
        self.queued = queued
        super().__init__(
            f"{failed_parts} of {parts} parts failed ({error}); {queued} documents were queued by the "
            "others. Running the backfill again queues the rest."
        )


def _enqueue_in_own_session(where, kind, model, priority, part) -> int:
    try:
        return _enqueue_part(where, kind, model, priority, None, part)
    finally:
        connections.close_all()  # this thread's connections only (Django's are per thread)


def _enqueue_part(where, kind, model, priority, limit, part: tuple[int, int] | None = None) -> int:
    if part is not None:
        where += " AND get_byte(uuid_send(d.id), 15) %% %(parts)s = %(part)s"
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"""SELECT sidecar_enqueue(ARRAY(SELECT d.id FROM source_documents d WHERE {where}
                                              LIMIT %(limit)s), %(priority)s, %(force)s)""",
            {
                "model": model, "limit": limit, "priority": priority, "force": kind == ALL,
                "part": part[0] if part else None, "parts": part[1] if part else None,
            },
        )  # fmt: skip
        return cursor.fetchone()[0]


def reconcile(model: str) -> int:
    """Queue, at low priority, documents whose embedding is missing or stale, that have no live
    item and are not held for a person: what the triggers missed. Returns how many were queued."""
    queued = enqueue(MISSING_OR_STALE, model, priority="low", skip_live=True)
    if queued:
        logger.warning("reconciliation queued %s documents the triggers had missed", queued)
    return queued


def delete_old_completed(older_than_hours: int, batch_size: int = 5000) -> int:
    """Delete completed items older than the cut-off, `batch_size` at a time so that no long
    transaction holds locks on a busy queue. Returns how many were deleted."""
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                """DELETE FROM embedding_queue WHERE id IN (
                       SELECT id FROM embedding_queue
                        WHERE status = 'completed'
                          AND processing_completed_at < statement_timestamp() - make_interval(hours => %s)
                        LIMIT %s FOR UPDATE SKIP LOCKED)""",
                [older_than_hours, batch_size],
            )
            deleted += cursor.rowcount
            if cursor.rowcount < batch_size:
                return deleted


def live_items() -> int:
    """Items still to do (pending, processing, rate-limited), from the partial unique index."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM embedding_queue WHERE status IN ({sql_list(LIVE)})")
        return cursor.fetchone()[0]


def recent_rate(minutes: int = 15) -> float | None:
    """Documents completed per second over the last `minutes`, or None with no recent work."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*), extract(epoch FROM max(processing_completed_at) - min(processing_started_at))
                 FROM embedding_queue
                WHERE status = 'completed'
                  AND processing_completed_at > statement_timestamp() - make_interval(mins => %s)""",
            [minutes],
        )
        done, seconds = cursor.fetchone()
    if not done or not seconds:
        return None
    return done / float(seconds)
