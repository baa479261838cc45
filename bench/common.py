"""What every scenario shares: emptying the tables, inserting documents, setting the batch size,
timing, and the shape of a scenario's result."""

import math
import os
import statistics
import time
from dataclasses import dataclass, field

INSERT_BATCH = 1000


@dataclass
class Row:
    """One line of the results table."""

    measure: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None


@dataclass
class ScenarioResult:
    name: str
    corpus: str
    parameters: dict
    rows: list[Row] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # every number, flat, for the JSON report
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, measure: str, value: float, unit: str, target: str = "", met=None) -> None:
        self.metrics[key] = value
        self.rows.append(Row(measure, value, unit, target, met))


def empty_tables() -> None:
    """Documents, sidecar, queue and worker registry: every measurement starts from nothing."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE source_documents, document_embeddings, embedding_queue, embedding_queue_workers CASCADE"
        )


def insert_documents(documents: list[dict]) -> float:
    """bulk_create in batches (one INSERT each, so the statement-level trigger enqueues once
    per batch); returns the seconds it took."""
    from django.db import transaction

    from documents.models import SourceDocument

    started = time.perf_counter()
    for start in range(0, len(documents), INSERT_BATCH):
        with transaction.atomic():
            SourceDocument.objects.bulk_create(
                [SourceDocument(**doc) for doc in documents[start : start + INSERT_BATCH]]
            )
    return time.perf_counter() - started


def set_config(key: str, value) -> None:
    """Set one queue setting, checked as the admin checks it; workers read it on their next batch."""
    from queue_admin import config
    from queue_admin.models import QueueConfig

    config.validate_value(key, value)
    QueueConfig.objects.update_or_create(config_key=key, defaults={"config_value": value})
    config.forget_cached()


def unset_config(key: str) -> None:
    """Back to the default (for a key that follows the provider, the workers' provider's)."""
    from queue_admin import config
    from queue_admin.models import QueueConfig

    QueueConfig.objects.filter(config_key=key).delete()
    config.forget_cached()


def set_batch_size(size: int) -> None:
    set_config("batch_size", size)


def embedded_documents() -> int:
    from documents.models import DocumentEmbedding

    return DocumentEmbedding.objects.values("document_id").distinct().count()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
