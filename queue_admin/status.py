"""The queue's figures in one dict: `manage.py queue_status`, and later the admin dashboard.

Exact counts for now, read through the (status, priority) index; on a queue table of millions
of rows these should become estimates (pg_class.reltuples, or counts of live statuses only).
"""

from datetime import UTC, datetime

from django.db import connection
from django.db.models import Count, Min

from documents.providers.factory import get_provider
from queue_admin import backfill, config, limits, registry
from queue_admin.models import QueueItem

# Bump when a key of `queue_status()` changes meaning or disappears; adding keys keeps it.
STATUS_FORMAT_VERSION = 1
THROUGHPUT_WINDOW_MINUTES = 15


def provider_breaker() -> dict:
    """The configured provider's shared circuit breaker: ``{"applicable", "state", "failures",
    "opened_at", "seconds_until_trial"}``. The local model runs in-process, with no breaker
    (``applicable`` False, ``state`` "not_applicable"); a fallback pair is remote, as the worker
    treats it."""
    provider = get_provider()
    if not getattr(provider, "is_remote", True):
        return {"applicable": False, "state": "not_applicable", "failures": None, "opened_at": None,
                "seconds_until_trial": None}  # fmt: skip
    recovery = config.current()["circuit_breaker_recovery_seconds"]
    breaker = limits.breaker_state(provider.model_id, recovery_seconds=recovery)
    return {
        "applicable": True,
        "state": breaker.state,
        "failures": breaker.failures,
        "opened_at": breaker.opened_at.isoformat() if breaker.opened_at else None,
        "seconds_until_trial": breaker.seconds_until_trial,
    }


def queue_status() -> dict:
    """Counts by status and priority, oldest pending age, recent throughput, live workers,
    breaker, queue switch and model: the keys README's "Operations" section documents."""
    by_status = {status: 0 for status in QueueItem.Status.values}
    by_status_and_priority = {status: dict.fromkeys(QueueItem.Priority.values, 0) for status in by_status}
    rows = QueueItem.objects.order_by().values_list("status", "priority").annotate(n=Count("*"))
    for status, priority, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        by_status_and_priority.setdefault(status, {})[priority] = n
    pending = QueueItem.objects.filter(status=QueueItem.Status.PENDING)
    oldest_pending = pending.aggregate(oldest=Min("created_at"))["oldest"]
    with connection.cursor() as cursor:
        # The database's clock, as for every other queue age: machines' clocks disagree.
        cursor.execute("SELECT statement_timestamp()")
        now = cursor.fetchone()[0]
    oldest_age = round((now - oldest_pending).total_seconds(), 3) if oldest_pending else None
    rate = backfill.recent_rate(THROUGHPUT_WINDOW_MINUTES)
    return {
        "version": STATUS_FORMAT_VERSION,
        "generated_at": now.astimezone(UTC).isoformat(),
        "queue_enabled": bool(config.current()["queue_enabled"]),
        "provider_model_id": get_provider().model_id,
        "counts": {
            "by_status": by_status,
            "by_status_and_priority": by_status_and_priority,
            "live": sum(by_status[s] for s in QueueItem.LIVE_STATUSES),
            "total": sum(by_status.values()),
        },
        "oldest_pending_age_seconds": oldest_age,
        "throughput_per_second_15m": round(rate, 3) if rate is not None else None,
        "live_workers": registry.alive_workers().count(),
        "breaker": provider_breaker(),
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
        f"  live workers: {status['live_workers']}",
        f"  breaker:      {breaker['state'].replace('_', ' ')}"
        + (f" ({breaker['failures']} consecutive failures)" if breaker["failures"] else ""),
        f"  oldest pending: {'none' if age is None else f'{age:.0f} s'}",
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
    return "\n".join(lines)
