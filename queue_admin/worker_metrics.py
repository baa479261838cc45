"""Counters and histograms of what the workers did, kept in PostgreSQL.

Workers run as many processes on many machines, and `/metrics` is served by whichever web
process a scrape reaches; Prometheus' own multi-process mode only adds up processes of one
machine. So each worker keeps its figures in memory during a batch and, after the batch, adds
them to shared rows (`embedding_worker_metrics`) in one statement; the web's collector
(`console/metrics.py`) reads the rows. A worker killed mid-batch loses that batch's
figures, never anyone else's.

Rows are Prometheus series: (name, labels) → value, histograms as their ``_bucket`` (cumulative,
with ``le``), ``_sum`` and ``_count`` series. All names and buckets are declared here.
"""

import json
import threading
from bisect import bisect_left
from collections import defaultdict

from django.db import connection

# Counters: name → help text. (Prometheus adds the _total the exposition shows.)
COUNTERS = {
    "sidecar_documents": "Queue items a worker finished a batch with, by outcome.",
    "sidecar_item_failures": "Items that failed an attempt, by error kind (transient, rate_limited, permanent).",
    "sidecar_texts_embedded": "Texts (chunks) sent to the embedding model and embedded.",
    "sidecar_tokens_sent": "Tokens in the texts sent to the embedding model, as it counted them.",
    "sidecar_provider_requests": "Requests to the embedding model, by result (ok or the error kind).",
    "sidecar_rate_limit_wait_seconds": "Seconds workers waited for room under the shared rate limits.",
}
# Histograms: name → (help text, upper bounds in seconds).
HISTOGRAMS = {
    "sidecar_batch_duration_seconds": (
        "Time to process one claimed batch, claim to commit.",
        (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    ),
    "sidecar_provider_request_duration_seconds": (
        "Time of one request to the embedding model (a sub-batch of texts).",
        (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    ),
}

_ADD = """
INSERT INTO embedding_worker_metrics AS m (name, labels, value)
SELECT name, labels::jsonb, value FROM unnest(%s::text[], %s::text[], %s::float8[]) AS d(name, labels, value)
 -- a fixed order, so two workers flushing at once lock the shared rows in the same order
 ORDER BY name, labels
ON CONFLICT (name, labels) DO UPDATE SET value = m.value + EXCLUDED.value
"""


def _labels(labels: dict) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


class Recorder:
    """One worker's figures since its last flush. Thread-safe: the heartbeat thread never
    records, but a provider may call back from its own threads."""

    def __init__(self):
        self._pending: dict[tuple[str, str], float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1, **labels) -> None:
        if name not in COUNTERS:
            raise KeyError(f"undeclared counter {name!r}")
        if amount:
            with self._lock:
                self._pending[(name, _labels(labels))] += amount

    def observe(self, name: str, seconds: float, **labels) -> None:
        _, bounds = HISTOGRAMS[name]
        with self._lock:
            # Buckets are cumulative: the observation counts in every bucket from its own up.
            for bound in bounds[bisect_left(bounds, seconds) :]:
                self._pending[(f"{name}_bucket", _labels({**labels, "le": str(bound)}))] += 1
            self._pending[(f"{name}_bucket", _labels({**labels, "le": "+Inf"}))] += 1
            self._pending[(f"{name}_sum", _labels(labels))] += seconds
            self._pending[(f"{name}_count", _labels(labels))] += 1

    def flush(self) -> None:
        """Add everything recorded since the last flush to the shared rows, in one statement."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return
        keys = sorted(pending)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    _ADD,
                    [[name for name, _ in keys], [labels for _, labels in keys], [pending[k] for k in keys]],
                )
        except Exception:
            # The database is away: keep the counts for the next flush rather than lose them.
            with self._lock:
                for key, value in pending.items():
                    self._pending[key] += value
            raise


def read_all() -> dict[str, list[tuple[dict, float]]]:
    """Every stored series: name → [(labels, value)], for the collector."""
    series: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, labels, value FROM embedding_worker_metrics ORDER BY name, labels::text")
        for name, labels, value in cursor.fetchall():
            series[name].append((labels if isinstance(labels, dict) else json.loads(labels), value))
    return series
