"""Document state is one rule written twice — as ORM conditions (the documents list, its filter,
the change page) and as SQL (backfill, reconciliation, the freshness counts) — so this checks
that both sort every case alike, the cases where precedence matters included."""

import pytest
from django.db import connection

from documents.models import SourceDocument
from queue_admin import backfill, document_state
from queue_admin.document_state import (
    SQL_ANY_CHUNK,
    SQL_BLANK,
    SQL_CURRENT,
    SQL_LIVE_ITEM,
    SQL_NEWEST_CANCELLED,
    SQL_NEWEST_FAILED,
)
from tests.helpers import add_item, make_document

pytestmark = pytest.mark.django_db

MODEL = "state-model@1"

# The states in the order the documents list's CASE tests them (document_state's docstring).
SQL_STATE = f"""
SELECT d.title, CASE WHEN {SQL_LIVE_ITEM} THEN 'queued' WHEN {SQL_CURRENT} THEN 'fresh'
                     WHEN {SQL_BLANK} THEN 'empty' WHEN {SQL_NEWEST_FAILED} THEN 'failed'
                     WHEN {SQL_NEWEST_CANCELLED} THEN 'cancelled' WHEN {SQL_ANY_CHUNK} THEN 'stale'
                     ELSE 'missing' END
  FROM source_documents d
"""


def document(title, content="text about foxes", *, chunks=0, model=MODEL, current=True, items=()):
    """A settled document with `chunks` sidecar rows by `model`, made from its text (`current`)
    or another, and queue `items`, oldest first."""
    doc = make_document(title, content, chunks=chunks, model=model, text_hash=None if current else "0" * 32)
    for age, status in zip(range(len(items), 0, -1), items, strict=True):
        add_item(doc, status, minutes_ago=age)
    return doc


@pytest.fixture
def every_case():
    cases = {
        "fresh": document("fresh", chunks=2),
        "stale": document("stale", chunks=1, current=False),
        "stale-other-model": document("stale-other-model", chunks=1, model="old-model@1"),
        "missing": document("missing"),
        "queued-stale": document("queued-stale", chunks=1, current=False, items=["pending"]),
        "queued-fresh": document("queued-fresh", chunks=1, items=["processing"]),
        "rate-limited": document("rate-limited", items=["rate_limited"]),
        "failed": document("failed", items=["failed"]),
        "failed-then-fresh": document("failed-then-fresh", chunks=1, items=["failed"]),
        "failed-then-completed": document(
            "failed-then-completed", chunks=1, current=False, items=["failed", "completed"]
        ),  # fmt: skip
        "completed-then-failed": document(
            "completed-then-failed", chunks=1, current=False, items=["completed", "failed"]
        ),  # fmt: skip
        "cancelled": document("cancelled", chunks=1, current=False, items=["cancelled"]),
        "cancelled-then-failed": document("cancelled-then-failed", items=["cancelled", "failed"]),
        "failed-then-cancelled": document("failed-then-cancelled", items=["failed", "cancelled"]),
        "empty": document("empty", content="   "),
        "empty-failed": document("empty-failed", content="\n", items=["failed"]),
    }
    return cases


EXPECTED = {
    "fresh": "fresh", "stale": "stale", "stale-other-model": "stale", "missing": "missing",
    "queued-stale": "queued", "queued-fresh": "queued", "rate-limited": "queued", "failed": "failed",
    "failed-then-fresh": "fresh", "failed-then-completed": "stale", "completed-then-failed": "failed",
    "cancelled": "cancelled", "cancelled-then-failed": "failed", "failed-then-cancelled": "cancelled",
    "empty": "empty", "empty-failed": "empty",
}  # fmt: skip


def test_the_orm_and_the_sql_sort_every_case_alike(every_case):
    orm = dict(
        document_state.annotate(SourceDocument.objects.all(), MODEL).values_list("title", "embedding_status")
    )
    with connection.cursor() as cursor:
        cursor.execute(SQL_STATE, {"model": MODEL})
        sql = dict(cursor.fetchall())
    assert orm == EXPECTED
    assert sql == EXPECTED


@pytest.mark.parametrize("state", [key for key, _ in document_state.CHOICES])
def test_each_filter_selects_exactly_its_state(every_case, state):
    selected = document_state.filter_status(SourceDocument.objects.all(), state, MODEL)
    assert sorted(selected.values_list("title", flat=True)) == sorted(
        t for t, s in EXPECTED.items() if s == state
    )


def test_backfill_selects_the_stale_and_missing_and_counts_the_held_apart(every_case):
    selection = backfill.count(backfill.MISSING_OR_STALE, MODEL, skip_live=True)
    to_queue = [t for t, s in EXPECTED.items() if s in ("stale", "missing")]
    held = [t for t, s in EXPECTED.items() if s in ("failed", "cancelled")]
    assert (selection.documents, selection.held_back) == (len(to_queue), len(held))


def test_the_freshness_counts_agree_with_the_states(every_case):
    counts = document_state.count_freshness(MODEL)
    with_text = [t for t, s in EXPECTED.items() if s != "empty"]
    assert counts.documents == len(with_text)
    # The counts sort by embedding alone: a queued document counts as fresh, stale or missing.
    assert counts.fresh == 3  # fresh, queued-fresh, failed-then-fresh
    assert (counts.failed, counts.cancelled) == (3, 2)
    assert counts.fresh + counts.stale + counts.missing == len(with_text)
