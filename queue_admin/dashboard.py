"""The admin dashboard's figures, as one dataclass: the page only displays them.

`dashboard()` reads, in a few index-backed statements: the queue's counts (`queue_counts`, the
same as `manage.py queue_status`), documents completed per minute over the last hour, failures
in that hour and their commonest messages, the time to drain at the recent rate, each
provider's shared breaker and quota use, the provider in use, documents fresh / stale / missing
/ failed (`freshness`), and workers by health (`registry.worker_counts`). Nothing here counts every row of a big table; figures
that are estimates or snapshots say so (`Count.estimated`, `DocumentFreshness.counted_at`).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils.translation import gettext_lazy

from documents import vector_index
from documents.providers.factory import get_provider
from queue_admin import config, freshness, limits, queue_counts, searching, status, vector_indexes, vocabulary
from queue_admin.models import ProviderLimitState, QueueItem
from queue_admin.queue_counts import Count

CHART_MINUTES = 60
# "Top errors" groups the messages of this many most recent failures (newest first, indexed).
RECENT_FAILURES = 1000
TOP_ERRORS = 5
ERROR_MESSAGE_CHARS = 300
PROVIDER_NAMES = {
    "local": gettext_lazy("Local model (in-process, CPU)"),
    "openai": gettext_lazy("OpenAI-compatible API"),
    "tei": gettext_lazy("Hugging Face Text Embeddings Inference"),
}


@dataclass(frozen=True)
class MinuteBucket:
    minute: datetime  # start of the minute
    documents: int  # completed in it


@dataclass(frozen=True)
class ErrorGroup:
    kind: str
    message: str  # first ERROR_MESSAGE_CHARS characters
    items: int
    last_seen: datetime


@dataclass(frozen=True)
class ProviderInUse:
    name: str  # EMBEDDING_PROVIDER, for people
    model_id: str
    dimensions: int
    remote: bool
    fallback: str  # EMBEDDING_FALLBACK_PROVIDER for people, or ""


@dataclass(frozen=True)
class ProviderLimits:
    key: str
    in_use: bool
    breaker: limits.BreakerStatus
    quota: limits.QuotaUse


@dataclass(frozen=True)
class Dashboard(status.QueueFigures):
    """What `queue_status` shows (`status.QueueFigures`, read once), and the dashboard's own
    figures beside it."""

    by_priority: dict[str, Count]
    throughput: list[MinuteBucket]  # CHART_MINUTES buckets, oldest first, the current minute last
    completed_last_hour: int
    failed_last_hour: int
    top_errors: list[ErrorGroup]
    provider: ProviderInUse
    provider_limits: list[ProviderLimits]
    documents: freshness.DocumentFreshness
    completed_last_minute: int  # the throughput card: 0 within a minute of the queue going idle
    text_sizes: "TextSizes"  # of the waiting documents and of those completed lately, for the drain estimate
    vector_indexes: list[vector_index.IndexState]  # each model in use's (documents/vector_index.py)
    search_model: str  # the model search answers with (the previous one during a model change)

    @property
    def error_rate(self) -> float | None:
        """Share of the last hour's finished items that failed; None when none finished."""
        finished = self.completed_last_hour + self.failed_last_hour
        return self.failed_last_hour / finished if finished else None

    @property
    def drain_seconds(self) -> float | None:
        """The waiting work at the last 15 minutes' pace, by size: live items (less those at the
        provider's Batch API) × their texts' average length ÷ (documents per second × the average length of those completed), so a
        queue of long documents behind a run of short ones is not promised in minutes. 0 with
        nothing to do, None with no recent rate."""
        waiting = max(0, self.live.value - self.at_the_provider)  # the Batch API's are not the workers'
        if waiting == 0:
            return 0.0
        if not self.rate_per_second_15m:
            return None
        return waiting / self.rate_per_second_15m * self.text_sizes.ratio

    @property
    def embedded_share(self) -> float | None:
        """Fresh documents ÷ all documents (the dashboard's "how much is done"); None uncounted."""
        counts = self.documents.counts
        if counts is None or not counts.documents:
            return None
        return counts.fresh / counts.documents

    @property
    def failed_items(self) -> Count:
        return self.by_status[QueueItem.Status.FAILED]


@dataclass(frozen=True)
class TextSizes:
    """Average characters of (a sample of) the waiting documents' texts and of those
    completed in the last 15 minutes; None where there are none."""

    waiting: float | None
    completed: float | None

    @property
    def ratio(self) -> float:
        """How much longer the waiting texts are than the recent ones (1 when unknown)."""
        if not self.waiting or not self.completed:
            return 1.0
        return self.waiting / self.completed


# At most this many documents' lengths are read for each average: an estimate needs no more,
# and the dashboard must stay fast with a million items waiting.
SIZE_SAMPLE = 1_000
TEXT_SIZES = f"""
SELECT (SELECT avg(length(d.content)) FROM
          (SELECT document_id FROM embedding_queue WHERE status IN ({vocabulary.sql_list(vocabulary.LIVE)})
            LIMIT %(sample)s) q JOIN source_documents d ON d.id = q.document_id),
       (SELECT avg(length(d.content)) FROM
          (SELECT document_id FROM embedding_queue
            WHERE status = 'completed'
              AND processing_completed_at > statement_timestamp() - make_interval(mins => %(minutes)s)
            ORDER BY processing_completed_at DESC LIMIT %(sample)s) q JOIN source_documents d ON d.id = q.document_id)
"""
COMPLETED_LAST_MINUTE = """
SELECT count(*) FROM embedding_queue
 WHERE status = 'completed' AND processing_completed_at > statement_timestamp() - interval '60 seconds'"""


def text_sizes(minutes: int = status.THROUGHPUT_WINDOW_MINUTES) -> TextSizes:
    with connection.cursor() as cursor:
        cursor.execute(TEXT_SIZES, {"sample": SIZE_SAMPLE, "minutes": minutes})
        waiting, completed = cursor.fetchone()
    return TextSizes(
        None if waiting is None else float(waiting), None if completed is None else float(completed)
    )


def completed_last_minute() -> int:
    with connection.cursor() as cursor:
        cursor.execute(COMPLETED_LAST_MINUTE)
        return cursor.fetchone()[0]


THROUGHPUT = """
WITH chart AS (SELECT date_trunc('minute', statement_timestamp()) - make_interval(mins => %(minutes)s - 1) AS start),
done AS (
    SELECT date_trunc('minute', q.processing_completed_at) AS minute, count(*) AS documents
      FROM embedding_queue q, chart
     WHERE q.status = 'completed' AND q.processing_completed_at >= chart.start
     GROUP BY 1
)
SELECT m.minute, coalesce(done.documents, 0)
  FROM chart, generate_series(chart.start, chart.start + make_interval(mins => %(minutes)s - 1), interval '1 minute')
       AS m(minute)
  LEFT JOIN done USING (minute)
 ORDER BY m.minute
"""

FAILED_SINCE = "SELECT count(*) FROM embedding_queue WHERE status = 'failed' AND updated_at >= %s"

TOP_ERROR_GROUPS = """
SELECT error_kind, left(error_message, %(chars)s) AS message, count(*) AS items, max(updated_at) AS last_seen
  FROM (SELECT error_kind, error_message, updated_at FROM embedding_queue
         WHERE status = 'failed' ORDER BY updated_at DESC LIMIT %(recent)s) recent
 GROUP BY 1, 2
 ORDER BY items DESC, last_seen DESC
 LIMIT %(top)s
"""


def throughput_per_minute(minutes: int = CHART_MINUTES) -> list[MinuteBucket]:
    """Documents completed in each of the last `minutes` minutes (the current one last, still
    filling), by the database clock; every minute present, zeros included."""
    with connection.cursor() as cursor:
        cursor.execute(THROUGHPUT, {"minutes": minutes})
        return [MinuteBucket(minute, documents) for minute, documents in cursor.fetchall()]


def failed_since(since: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(FAILED_SINCE, [since])
        return cursor.fetchone()[0]


def top_errors() -> list[ErrorGroup]:
    """The commonest (kind, message) among the RECENT_FAILURES newest failed items."""
    with connection.cursor() as cursor:
        cursor.execute(
            TOP_ERROR_GROUPS, {"chars": ERROR_MESSAGE_CHARS, "recent": RECENT_FAILURES, "top": TOP_ERRORS}
        )
        return [ErrorGroup(*row) for row in cursor.fetchall()]


def provider_in_use() -> ProviderInUse:
    provider = get_provider()
    fallback = settings.EMBEDDING_FALLBACK_PROVIDER
    return ProviderInUse(
        name=PROVIDER_NAMES.get(settings.EMBEDDING_PROVIDER, settings.EMBEDDING_PROVIDER),
        model_id=provider.model_id,
        dimensions=provider.dimensions,
        remote=provider.is_remote,
        fallback=PROVIDER_NAMES.get(fallback, fallback) if fallback else "",
    )


def provider_limits(model_id: str, queue_settings: config.QueueSettings) -> list[ProviderLimits]:
    """Every provider the workers have used (one shared row each), the one in use first."""
    quotas = limits.quota_use(
        rpm=queue_settings.api_quota_per_minute, tpm=queue_settings.token_quota_per_minute
    )
    keys = sorted(
        ProviderLimitState.objects.values_list("provider_key", flat=True), key=lambda k: k != model_id
    )
    recovery = queue_settings.circuit_breaker_recovery_seconds
    return [
        ProviderLimits(
            key, key == model_id, limits.breaker_state(key, recovery_seconds=recovery), quotas[key]
        )
        for key in keys
        if key in quotas
    ]


def dashboard() -> Dashboard:
    """Read every figure; see the module docstring for what and how."""
    queue_settings = config.current()
    queue = status.queue_figures()
    by_priority = {
        priority: queue_counts.total({name: row[priority] for name, row in queue.counts.items()})
        for priority in QueueItem.Priority.values
    }
    throughput = throughput_per_minute()
    provider = provider_in_use()
    return Dashboard(
        **vars(queue),
        by_priority=by_priority,
        throughput=throughput,
        completed_last_hour=sum(bucket.documents for bucket in throughput),
        failed_last_hour=failed_since(throughput[0].minute),
        top_errors=top_errors(),
        provider=provider,
        provider_limits=provider_limits(provider.model_id, queue_settings),
        documents=freshness.document_freshness(provider.model_id),
        completed_last_minute=completed_last_minute(),
        text_sizes=text_sizes(),
        vector_indexes=vector_indexes.states(),
        search_model=searching.choose_provider().model_id,
    )
