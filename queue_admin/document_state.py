"""Where each document's embedding stands, for the configured model, as SQL a list can page.

One status per document, the first that applies:

* ``queued``  — it has a live queue item (pending, processing or rate-limited);
* ``fresh``   — chunk 0 for the model was made from the current text
  (``document_text_hash = content_hash``);
* ``empty``   — its text is blank: nothing to embed (backfill skips it too). Blank text is
  never fresh (the workers write no chunks for it), so testing it after ``fresh`` changes
  nothing but saves reading the text of every fresh document;
* ``failed``  — its newest queue item failed (a dead letter);
* ``cancelled`` — its newest queue item was cancelled by a person;
* ``stale``   — it has chunks (of any model), but not from its current text with this model;
* ``missing`` — it has no chunks at all.

``failed`` and ``cancelled`` documents are held for a person: neither reconciliation nor backfill
(without ``--include-failed``) queues them again. ``stale`` and ``missing`` are what
``queue_admin.backfill`` selects as STALE and MISSING (less the queued and held ones), so the
list, its filter and the backfill page agree.

Staying fast on a large table: the list computes statuses for the rows of one page only
(`for_page`), and each filter is a WHERE clause of EXISTS / NOT EXISTS tests on indexed
columns, which PostgreSQL runs as semi- and anti-joins. The common states are found by
walking the updated_at index; the rare ones (stale, missing, no text) need one pass over the
table, like backfill's own count.
"""

from dataclasses import dataclass

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    Func,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from documents.models import DocumentEmbedding
from queue_admin.models import QueueItem
from queue_admin.vocabulary import LIVE, sql_list

QUEUED, EMPTY, FRESH, FAILED, CANCELLED, STALE, MISSING = (
    "queued", "empty", "fresh", "failed", "cancelled", "stale", "missing"
)  # fmt: skip
CHOICES = [
    (FRESH, _("fresh")),
    (STALE, _("stale")),
    (MISSING, _("missing")),
    (QUEUED, _("queued")),
    (FAILED, _("failed")),
    (CANCELLED, _("cancelled")),
    (EMPTY, _("no text")),
]
LABELS = dict(CHOICES)
EXPLANATIONS = {
    QUEUED: _("waiting in the queue, or being embedded now."),
    EMPTY: _("the text is blank: there is nothing to embed."),
    FRESH: _("embedded from the current text with the configured model."),
    FAILED: _(
        "the last attempt failed (the error is below): it is not queued again until you retry it "
        "from Dead letters, re-embed it, or its text changes."
    ),
    CANCELLED: _(
        "its queue item was cancelled by a person: it is not queued again until you retry or "
        "re-embed it, or its text changes."
    ),
    STALE: _("embedded, but from an earlier text or by another model: a backfill re-embeds it."),
    MISSING: _("never embedded: a backfill embeds it."),
}


class IsBlank(Func):
    """The triggers' own test for "nothing to embed" (`sidecar_is_blank`, queue_admin/sql/), so
    all parts agree; behind a test of the first character, because running the regular
    expression on every document of a filtered scan costs more than the scan itself. Only a
    text that starts with a space, a control character or a non-ASCII character (which may
    be a Unicode space) — or an empty one (ascii('') is 0) — reaches the full test."""

    template = "((ascii(%(expressions)s) <= 32 OR ascii(%(expressions)s) > 126) AND sidecar_is_blank(%(expressions)s))"
    output_field = BooleanField()


def _live_item():
    return QueueItem.objects.filter(document=OuterRef("pk"), status__in=QueueItem.LIVE_STATUSES)


def _is_current(model: str) -> Q:
    """Chunk 0 for `model` was made from the current text, as a per-row comparison: the
    "fresh" test.

    Not EXISTS(... AND e.document_text_hash = d.content_hash): PostgreSQL turns that into a
    join and takes the two equal hashes for independent columns — about one match in the
    whole table — so the "fresh" filter (most documents) would hash both tables and sort them
    all instead of walking the updated_at index for the first page."""
    chunk_zero = DocumentEmbedding.objects.filter(document=OuterRef("pk"), chunk_index=0, model=model)
    return Q(content_hash=Coalesce(Subquery(chunk_zero.values("document_text_hash")[:1]), Value("")))


def _is_not_current(model: str) -> Q:
    """The negation, as an anti-join: for the rare statuses a hashed anti-join over the table
    beats a subquery per document, and its estimate (few rows removed) errs the safe way."""
    current_chunk_zero = DocumentEmbedding.objects.filter(
        document=OuterRef("pk"), chunk_index=0, model=model, document_text_hash=OuterRef("content_hash")
    )
    return ~Q(Exists(current_chunk_zero))


def _any_chunk():
    return DocumentEmbedding.objects.filter(document=OuterRef("pk"), chunk_index=0)


def _newest_item_is(status: str):
    """The document's newest queue item is in `status`: such an item with no newer item
    (created later, or at the same instant with a greater id). Failed and cancelled items are
    few, so for most documents the first probe already answers."""
    newer = QueueItem.objects.filter(document=OuterRef("document")).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
    )
    return QueueItem.objects.filter(document=OuterRef("pk"), status=status).filter(~Exists(newer))


def _tests(model: str) -> dict[str, Q]:
    """Each status's own test, to be read in the order of the module docstring."""
    return {
        QUEUED: Q(Exists(_live_item())),
        FRESH: _is_current(model),
        EMPTY: Q(is_blank=True),
        FAILED: Q(Exists(_newest_item_is(QueueItem.Status.FAILED))),
        CANCELLED: Q(Exists(_newest_item_is(QueueItem.Status.CANCELLED))),
        STALE: Q(Exists(_any_chunk())),
    }


def _conditions(model: str) -> dict[str, Q]:
    """Each status as a stand-alone WHERE clause: its own test, and no earlier one's — less
    the negations already implied (blank text is never fresh: the workers write no chunks for
    it; a document without chunks is not fresh either)."""
    test = _tests(model)
    not_queued, not_fresh, not_blank = ~test[QUEUED], _is_not_current(model), ~test[EMPTY]
    not_held = ~test[FAILED] & ~test[CANCELLED]
    return {
        QUEUED: test[QUEUED],
        FRESH: not_queued & test[FRESH],
        EMPTY: not_queued & test[EMPTY],
        FAILED: not_queued & not_blank & not_fresh & test[FAILED],
        CANCELLED: not_queued & not_blank & not_fresh & ~test[FAILED] & test[CANCELLED],
        STALE: not_queued & not_blank & not_fresh & not_held & test[STALE],
        MISSING: not_queued & not_blank & not_held & ~test[STALE],
    }


def _with_inputs(queryset: QuerySet) -> QuerySet:
    return queryset.alias(is_blank=IsBlank("content"))


def annotate(queryset: QuerySet, model: str) -> QuerySet:
    """Add ``embedding_status`` (one of CHOICES' keys), ``chunk_count`` (rows of `model`) and
    ``embedded_model`` (chunk 0's model, `model` first) to a SourceDocument queryset."""
    tests = _tests(model)
    chunks_of_model = (
        DocumentEmbedding.objects.filter(document=OuterRef("pk"), model=model)
        .order_by()
        .values("document")
        .annotate(n=Count("*"))
        .values("n")
    )
    first_chunk_model = _any_chunk().order_by(
        Case(When(model=model, then=Value(0)), default=Value(1)), "-updated_at"
    )
    return _with_inputs(queryset).annotate(
        # CASE takes the first WHEN that holds: each test runs only if the earlier ones failed.
        embedding_status=Case(
            *(
                When(tests[status], then=Value(status))
                for status in (QUEUED, FRESH, EMPTY, FAILED, CANCELLED, STALE)
            ),
            default=Value(MISSING),
            output_field=CharField(),
        ),
        chunk_count=Coalesce(Subquery(chunks_of_model), Value(0), output_field=IntegerField()),
        embedded_model=Subquery(first_chunk_model.values("model")[:1]),
    )


def for_page(page: QuerySet, model: str) -> list:
    """The documents of one list page, in its order, annotated as `annotate` does.

    Two queries: the page's ids (the list's filter, order and slice), then the annotations for
    exactly those ids. Annotating the page query itself would let PostgreSQL plan the
    subqueries for every row it might scan, and on a large table it chooses to hash whole
    tables (every chunk 0, every live item) to answer for 100 rows."""
    ids = list(page.values_list("pk", flat=True))
    rows = annotate(page.model.objects.filter(pk__in=ids).defer("content"), model)
    position = {pk: index for index, pk in enumerate(ids)}
    return sorted(rows, key=lambda row: position[row.pk])


def filter_status(queryset: QuerySet, status: str, model: str) -> QuerySet:
    """Only the documents in `status` (a key of CHOICES); raises KeyError for another value."""
    return _with_inputs(queryset).filter(_conditions(model)[status])


def embedding_summary(document, model: str) -> dict:
    """What the change page shows about one document's embedding: status, chunks and tokens of
    `model`, the text hash they were made from, when, and its newest queue item."""
    status = (
        annotate(type(document).objects.filter(pk=document.pk), model)
        .values_list("embedding_status", flat=True)
        .first()
    )
    rows = DocumentEmbedding.objects.filter(document=document, model=model).aggregate(
        chunks=Count("id"),
        tokens=Sum("token_count"),
        embedded_at=Max("updated_at"),
        text_hash=Max("document_text_hash", filter=Q(chunk_index=0)),
    )
    latest_item = (
        QueueItem.objects.filter(document=document)
        .order_by("-created_at", "-id")
        .only("status", "priority", "retry_count", "error_kind", "error_message", "updated_at")
        .first()
    )
    return {
        "status": status or MISSING,
        "chunks": rows["chunks"],
        "tokens": rows["tokens"] or 0,
        "embedded_at": rows["embedded_at"],
        "text_hash": rows["text_hash"],
        "text_hash_is_current": rows["text_hash"] == document.content_hash,
        "latest_item": latest_item,
    }


# --- The same tests in SQL ------------------------------------------------------------------
# Backfill, reconciliation and the freshness counts sort millions of documents in one statement
# each, over `source_documents d` with the model as `%(model)s`. These are the tests above,
# written for them; tests/queue/test_document_state.py checks that both forms sort every case
# alike.


SQL_BLANK = "sidecar_is_blank(d.content)"
# Chunk 0 for the model was made from the current text: the sidecar's unique index
# (document_id, chunk_index, model) answers it.
SQL_CURRENT = """EXISTS (SELECT 1 FROM document_embeddings e
                          WHERE e.document_id = d.id AND e.chunk_index = 0 AND e.model = %(model)s
                            AND e.document_text_hash = d.content_hash)"""
SQL_ANY_CHUNK = (
    "EXISTS (SELECT 1 FROM document_embeddings e WHERE e.document_id = d.id AND e.chunk_index = 0)"
)
SQL_LIVE_ITEM = f"""EXISTS (SELECT 1 FROM embedding_queue q
                             WHERE q.document_id = d.id AND q.status IN ({sql_list(LIVE)}))"""


def sql_newest_item_is(*statuses: str) -> str:
    """The document's newest queue item (latest created_at, then greatest id, as
    `_newest_item_is`) is in one of `statuses`."""
    return f"""EXISTS (SELECT 1 FROM embedding_queue q
                        WHERE q.document_id = d.id AND q.status IN ({sql_list(statuses)})
                          AND NOT EXISTS (SELECT 1 FROM embedding_queue n
                                           WHERE n.document_id = d.id
                                             AND (n.created_at, n.id) > (q.created_at, q.id)))"""


SQL_NEWEST_FAILED = sql_newest_item_is(QueueItem.Status.FAILED)
SQL_NEWEST_CANCELLED = sql_newest_item_is(QueueItem.Status.CANCELLED)
# Held for a person (FAILED or CANCELLED): only a retry, a re-embed or a new text (the trigger
# queues a new item) moves it on. Queueing it again by machine would fail again, add a dead
# letter each time and, with a paid provider, cost a request each time.
SQL_HELD = sql_newest_item_is(QueueItem.Status.FAILED, QueueItem.Status.CANCELLED)


@dataclass(frozen=True)
class Freshness:
    documents: int  # with text; fresh + stale + missing
    fresh: int
    stale: int
    missing: int
    # Of the stale and missing, held for a person and not queued again (not by reconciliation,
    # not by backfill unless --include-failed): the newest item failed (a dead letter) ...
    failed: int
    cancelled: int = 0  # ... or a person cancelled it


def count_freshness(model: str) -> Freshness:
    """Every document with text as fresh, stale or missing by its embedding alone (queued ones
    too), plus how many of the unfinished ones are held for a person. One pass over the
    documents: slow on big tables, so the dashboard reads it from the snapshot the
    reconciliation schedule keeps (`freshness.py`)."""
    return total(count_freshness_by_source(model).values())


def total(parts) -> Freshness:
    """The sum of several sources' counts."""
    parts = list(parts)
    return (
        Freshness(*(sum(column) for column in zip(*(vars(part).values() for part in parts), strict=True)))
        if parts
        else Freshness(0, 0, 0, 0, 0, 0)
    )


def count_freshness_by_source(model: str) -> dict[int, Freshness]:
    """`count_freshness` for each source (by id) that has documents with text, in the same pass."""
    not_live = f"NOT {SQL_LIVE_ITEM}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT source_id, count(*), count(*) FILTER (WHERE state = 'fresh'), count(*) FILTER (WHERE state = 'stale'),
                       count(*) FILTER (WHERE state = 'missing'),
                       count(*) FILTER (WHERE state <> 'fresh' AND {SQL_NEWEST_FAILED} AND {not_live}),
                       count(*) FILTER (WHERE state <> 'fresh' AND {SQL_NEWEST_CANCELLED} AND {not_live})
                  FROM (SELECT d.id, d.source_id, CASE WHEN {SQL_CURRENT} THEN 'fresh'
                                          WHEN {SQL_ANY_CHUNK} THEN 'stale' ELSE 'missing' END AS state
                          FROM source_documents d WHERE NOT {SQL_BLANK}) d
                 GROUP BY source_id""",
            {"model": model},
        )
        return {source_id: Freshness(*counts) for source_id, *counts in cursor.fetchall()}
