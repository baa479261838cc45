"""Documents fresh / stale / missing / failed for the dashboard, without an anti-join per page load.

`document_state.count_freshness` visits every document; on a small table that takes milliseconds and the
dashboard runs it live. Above LIVE_COUNT_LIMIT documents the dashboard shows the snapshot that
the reconciliation schedule (`tasks.reconcile`, every 5 minutes) stores after its own pass over
the same documents, and says how old it is.
"""

import time
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from embedding_site import counting
from queue_admin import document_state, queue_counts
from queue_admin.models import FreshnessSnapshot

# Up to this many documents the dashboard counts live (tens of milliseconds); above, snapshots.
LIVE_COUNT_LIMIT = 20_000


@dataclass(frozen=True)
class DocumentFreshness:
    counts: document_state.Freshness | None  # None: too many documents and no snapshot yet
    counted_at: datetime | None  # when the snapshot was taken; None when counted live

    @property
    def live(self) -> bool:
        return self.counts is not None and self.counted_at is None


def refresh_snapshot(model: str) -> FreshnessSnapshot:
    """Count every document for `model` now and store it as the model's snapshot."""
    counted_at = queue_counts.database_now()
    started = time.monotonic()
    by_source = document_state.count_freshness_by_source(model)
    counts = document_state.total(by_source.values())
    snapshot, _ = FreshnessSnapshot.objects.update_or_create(
        model=model,
        defaults={
            "documents": counts.documents,
            "fresh": counts.fresh,
            "stale": counts.stale,
            "missing": counts.missing,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
            "by_source": {
                str(source_id): list(vars(figures).values()) for source_id, figures in by_source.items()
            },
            "counted_at": counted_at,
            "duration_ms": round((time.monotonic() - started) * 1000),
        },
    )
    return snapshot


@dataclass(frozen=True)
class SourceFreshness:
    by_source: dict[int, document_state.Freshness] | None  # None: too many documents and no snapshot yet
    counted_at: datetime | None


def _small() -> bool:
    with connection.cursor() as cursor:
        return (
            counting.capped_count(cursor, "SELECT 1 FROM source_documents", [], LIVE_COUNT_LIMIT) is not None
        )


def source_freshness(model: str) -> SourceFreshness:
    """`document_freshness` for each source: live while small, else from the latest snapshot."""
    if _small():
        return SourceFreshness(document_state.count_freshness_by_source(model), None)
    snapshot = FreshnessSnapshot.objects.filter(model=model).first()
    if snapshot is None:
        return SourceFreshness(None, None)
    return SourceFreshness(
        {
            int(source_id): document_state.Freshness(*counts)
            for source_id, counts in snapshot.by_source.items()
        },
        snapshot.counted_at,
    )


def document_freshness(model: str) -> DocumentFreshness:
    """Live counts while the documents table is small; else the latest snapshot for `model`
    (another model's snapshot says nothing about this one's embeddings)."""
    if _small():
        return DocumentFreshness(document_state.count_freshness(model), None)
    snapshot = FreshnessSnapshot.objects.filter(model=model).first()
    if snapshot is None:
        return DocumentFreshness(None, None)
    counts = document_state.Freshness(
        snapshot.documents,
        snapshot.fresh,
        snapshot.stale,
        snapshot.missing,
        snapshot.failed,
        snapshot.cancelled,
    )
    return DocumentFreshness(counts, snapshot.counted_at)
