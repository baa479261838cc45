"""The queue's figures in one dict: `manage.py queue_status` and `/metrics`.

Counts and the oldest pending age come from `queue_counts` (exact while a status/priority group
is small, the planner's estimate above `queue_counts.EXACT_COUNT_LIMIT`), the same functions the
admin dashboard (`queue_admin/dashboard.py`) reads: its `Dashboard` extends `QueueFigures`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from documents.providers.factory import get_provider
from queue_admin import backfill, config, limits, provider_batches, queue_counts, registry
from queue_admin.models import QueueItem
from queue_admin.queue_counts import Count

# Bump when a key of `queue_status()` changes meaning or disappears; adding keys keeps it.
STATUS_FORMAT_VERSION = 1
THROUGHPUT_WINDOW_MINUTES = 15


def provider_breaker() -> dict:
    """The configured provider's shared circuit breaker: ``{"applicable", "state", "failures",
    "opened_at", "seconds_until_trial"}``. The local model runs in-process, with no breaker
    (``applicable`` False, ``state`` "not_applicable"); a fallback pair is remote, as the worker
    treats it."""
    provider = get_provider()
    if not provider.is_remote:
        return {"applicable": False, "state": "not_applicable", "failures": None, "opened_at": None,
                "seconds_until_trial": None}  # fmt: skip
    recovery = config.current().circuit_breaker_recovery_seconds
    breaker = limits.breaker_state(provider.model_id, recovery_seconds=recovery)
    return {
        "applicable": True,
        "state": breaker.state,
        "failures": breaker.failures,
        "opened_at": breaker.opened_at.isoformat() if breaker.opened_at else None,
        "seconds_until_trial": breaker.seconds_until_trial,
    }


@dataclass(frozen=True)
class QueueFigures:
    """The queue's state at one reading: what `queue_status`, `/metrics` and the dashboard (whose
    `Dashboard` extends this) all show, read once here so they never disagree."""

    generated_at: datetime  # the database's clock
    queue_enabled: bool
    model_id: str  # the configured provider's
    counts: dict[str, dict[str, Count]]  # status -> priority -> Count
    by_status: dict[str, Count]
    live: Count
    total: Count
    oldest_pending_age_seconds: float | None
    rate_per_second_15m: float | None  # documents completed per second, last 15 minutes
    workers: registry.WorkerCounts
    breaker: dict  # `provider_breaker()`
    at_the_provider: int  # live items held by open provider batches (the Batch API), not the workers'

    @property
    def live_workers(self) -> int:
        return self.workers.live


def queue_figures() -> QueueFigures:
    counts = queue_counts.by_status_and_priority()
    by_status = {name: queue_counts.total(row) for name, row in counts.items()}
    now = queue_counts.database_now()
    return QueueFigures(
        generated_at=now,
        queue_enabled=bool(config.current().queue_enabled),
        model_id=get_provider().model_id,
        counts=counts,
        by_status=by_status,
        live=queue_counts.total({name: by_status[name] for name in QueueItem.LIVE_STATUSES}),
        total=queue_counts.total(by_status),
        oldest_pending_age_seconds=queue_counts.oldest_pending_age_seconds(now),
        rate_per_second_15m=backfill.recent_rate(THROUGHPUT_WINDOW_MINUTES),
        workers=registry.worker_counts(),
        breaker=provider_breaker(),
        at_the_provider=provider_batches.documents_at_the_provider(),
    )


def queue_status() -> dict:
    """`queue_figures()` as the JSON of `queue_status --json` (and /metrics' source): the keys
    the documentation's "Operations" page lists. `counts.estimated_statuses` lists the statuses
    whose counts include planner estimates."""
    figures = queue_figures()
    rate = figures.rate_per_second_15m
    return {
        "version": STATUS_FORMAT_VERSION,
        "generated_at": figures.generated_at.astimezone(UTC).isoformat(),
        "queue_enabled": figures.queue_enabled,
        "provider_model_id": figures.model_id,
        "counts": {
            "by_status": {status: count.value for status, count in figures.by_status.items()},
            "by_status_and_priority": {
                status: {priority: count.value for priority, count in row.items()}
                for status, row in figures.counts.items()
            },
            "live": figures.live.value,
            "total": figures.total.value,
            "estimated_statuses": [status for status, count in figures.by_status.items() if count.estimated],
        },
        "oldest_pending_age_seconds": figures.oldest_pending_age_seconds,
        "throughput_per_second_15m": round(rate, 3) if rate is not None else None,
        "live_workers": figures.workers.live,
        "late_workers": figures.workers.late,
        "dead_workers_last_hour": figures.workers.dead_recently,
        "breaker": figures.breaker,
        "documents_at_provider_batch_api": figures.at_the_provider,
    }


def format_status(status: dict) -> str:
    """The dict as a few readable lines for a terminal."""
    counts = status["counts"]
    age = status["oldest_pending_age_seconds"]
    rate = status["throughput_per_second_15m"]
    breaker = status["breaker"]
    lines = [
        f"Sidecar queue at {datetime.fromisoformat(status['generated_at']):%Y-%m-%d %H:%M:%S} UTC",
        f"  queue:        {'enabled' if status['queue_enabled'] else 'PAUSED'}",
        f"  model:        {status['provider_model_id']}",
        f"  live workers: {status['live_workers']}"
        + (f", {status['late_workers']} late" if status["late_workers"] else "")
        + (
            f" ({status['dead_workers_last_hour']} died in the last hour)"
            if status["dead_workers_last_hour"]
            else ""
        ),
        f"  breaker:      {breaker['state'].replace('_', ' ')}"
        + (f" ({breaker['failures']} consecutive failures)" if breaker["failures"] else ""),
        f"  oldest pending: {'none' if age is None else f'{age:.0f} s'}",
        *(
            [f"  at the provider's Batch API: {status['documents_at_provider_batch_api']} documents"]
            if status["documents_at_provider_batch_api"]
            else []
        ),
        f"  throughput (last 15 min): {'no completions' if rate is None else f'{rate:.2f} documents/s'}",
        "",
        f"  {'status':<14}{'high':>10}{'medium':>10}{'low':>10}{'total':>12}",
    ]
    for name, total in counts["by_status"].items():
        row = counts["by_status_and_priority"].get(name, {})
        lines.append(
            f"  {name:<14}{row.get('high', 0):>10}{row.get('medium', 0):>10}{row.get('low', 0):>10}{total:>12}"
        )
    lines.append(f"  {'live / total':<14}{'':>30}{counts['live']:>6} / {counts['total']}")
    if counts["estimated_statuses"]:
        lines.append(f"  (estimated from table statistics: {', '.join(counts['estimated_statuses'])})")
    return "\n".join(lines)
