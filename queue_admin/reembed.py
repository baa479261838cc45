"""Re-embedding documents a person chose (the admin's "Re-embed selected").

Counted first, for the confirmation; then queued *forced* — re-embedded even if the text is
unchanged, e.g. after a provider glitch produced poor vectors — through the database's own
`sidecar_enqueue` (queue_admin/sql/enqueue.sql), the function the triggers use, so a document
that already has a live item gets its priority raised and the force flag instead of a second
item. Documents with blank text are left out: there is nothing to embed.
"""

from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Func, IntegerField, Q, QuerySet, Sum

from queue_admin.document_state import IsBlank
from queue_admin.models import QueueItem


class EstimatedTokens(Func):
    """The queue's own estimate (`sidecar_estimated_tokens`, queue_admin/sql/enqueue.sql), as
    backfill and the enqueue function make it. The model's tokenizer would need every text in
    Python; this needs none."""

    function = "sidecar_estimated_tokens"
    output_field = IntegerField()


@dataclass(frozen=True)
class Chosen:
    documents: int  # with text: what would be queued
    blank: int  # without text: skipped
    estimated_tokens: int


@dataclass(frozen=True)
class Reembedded:
    queued: int  # documents now queued (or already queued, raised and forced)
    blank: int  # skipped: no text


def count(documents: QuerySet) -> Chosen:
    """How many of `documents` would be queued and their estimated tokens, in one query that
    reads the texts' lengths in PostgreSQL, never the texts."""
    with_text = ~Q(chosen_blank=True)
    figures = (
        documents.order_by()
        .annotate(chosen_blank=IsBlank("content"))
        .aggregate(
            documents=Count("pk", filter=with_text),
            blank=Count("pk", filter=~with_text),
            tokens=Sum(EstimatedTokens("content"), filter=with_text),
        )
    )
    return Chosen(figures["documents"], figures["blank"], figures["tokens"] or 0)


def reembed(documents: QuerySet, priority: str = QueueItem.Priority.HIGH) -> Reembedded:
    """Queue `documents` (a SourceDocument queryset: chosen ids, or a whole filtered list) at
    `priority`, forced. Documents deleted since they were chosen are simply not found.

    One statement; `queued` is what `sidecar_enqueue` itself reports, so a document deleted
    even while it runs is simply not counted."""
    ids_sql, params = documents.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH chosen AS MATERIALIZED (
                    SELECT d.id, sidecar_is_blank(d.content) AS blank
                      FROM source_documents d WHERE d.id IN ({ids_sql}))
                SELECT (SELECT count(*) FROM chosen WHERE blank),
                       sidecar_enqueue(ARRAY(SELECT id FROM chosen WHERE NOT blank), %s, true)""",
            [*params, str(priority)],
        )
        blank, queued = cursor.fetchone()
    return Reembedded(queued=queued, blank=blank)


def reembed_and_list(documents: QuerySet, priority: str = QueueItem.Priority.HIGH) -> list:
    """Queue `documents` as `reembed` does and return the ids queued (for a provider batch,
    which claims exactly those). Call inside a transaction."""
    ids_sql, params = documents.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id FROM source_documents d WHERE d.id IN ({ids_sql}) AND NOT sidecar_is_blank(d.content)",
            params,
        )
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT sidecar_enqueue(%s::uuid[], %s, true)", [ids, str(priority)])
    return ids
