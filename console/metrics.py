"""Prometheus metrics for ``GET /metrics``, read from PostgreSQL at each scrape.

Every figure comes from the database (the queue, the workers' registry, the provider state
table), not from this process's memory, so it does not matter which web process a scrape
reaches, or how many worker processes there are: all of them see the same rows. The
collector is registered in a registry of its own (no per-process Python/GC metrics, which
would differ from one web process to the next).

If the database cannot be read, the scrape still answers 200 with ``sidecar_up 0`` and
nothing else: alert on ``sidecar_up == 0`` (or on the scrape failing altogether); never a 500.

Access (``check_access``): optional ``METRICS_ALLOWED_IPS``, then ``METRICS_TOKEN`` as a
bearer token, compared in constant time. See README, *Operations → Metrics*.
"""

import hmac
import ipaddress
import logging
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from embedding_site.logs import scrub
from queue_admin import status, worker_metrics
from queue_admin.models import ProviderLimitState, Worker

logger = logging.getLogger("sidecar.metrics")

# A scrape that waits on a lock or a slow disk must not pile up behind the next one.
STATEMENT_TIMEOUT_MS = 5000
BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def _gauge(name: str, documentation: str, value: float | None = None, labels=()) -> GaugeMetricFamily:
    if labels:
        return GaugeMetricFamily(name, documentation, labels=labels)
    return GaugeMetricFamily(name, documentation, value=value)


def queue_families() -> list:
    """Depth by status and priority, oldest pending age, throughput, switch, live workers:
    the figures of ``queue_status()``, which `manage.py queue_status` shows."""
    figures = status.queue_status()
    items = _gauge(
        "sidecar_queue_items", "Queue items by status and priority.", labels=["status", "priority"]
    )
    for state, by_priority in figures["counts"]["by_status_and_priority"].items():
        for priority, n in by_priority.items():
            items.add_metric([state, priority], n)
    return [
        items,
        _gauge(
            "sidecar_queue_oldest_pending_age_seconds",
            "Age of the oldest pending item by the database clock; 0 when nothing is pending.",
            figures["oldest_pending_age_seconds"] or 0,
        ),
        _gauge(
            "sidecar_queue_completed_per_second_15m",
            "Documents completed per second over the last 15 minutes; 0 with none.",
            figures["throughput_per_second_15m"] or 0,
        ),
        _gauge(
            "sidecar_queue_enabled", "1 when the queue_enabled setting is on.", int(figures["queue_enabled"])
        ),
        _gauge("sidecar_workers_live", "Workers heartbeating, on time or late.", figures["live_workers"]),
        _gauge(
            "sidecar_workers_late",
            "Live workers silent for over 1.5 heartbeat intervals.",
            figures["late_workers"],
        ),
        _gauge(
            "sidecar_workers_dead_last_hour",
            "Workers that stopped heartbeating without saying goodbye, last heartbeat in the last hour.",
            figures["dead_workers_last_hour"],
        ),
    ]


def worker_families() -> list:
    """Per worker still registered as running (active or idle; finished ones would pile up as
    series, one per drain), heartbeat age and its registry counters. All-time totals are in
    `worker_metric_families`: sums of registry rows would fall when dead workers are cleared."""
    fields = {
        "tasks_processed": ("sidecar_worker_tasks_processed", "Documents completed"),
        "error_count": ("sidecar_worker_errors", "Items that failed or were retried"),
        "rate_limit_count": ("sidecar_worker_rate_limited", "Items rate limited by the provider"),
    }
    age = _gauge(
        "sidecar_worker_last_heartbeat_age_seconds",
        "Seconds since the worker's last heartbeat, by the database clock.",
        labels=["worker_id"],
    )
    per_worker = {
        field: CounterMetricFamily(name, f"{what} by this worker.", labels=["worker_id"])
        for field, (name, what) in fields.items()
    }
    running = (
        Worker.objects.filter(status__in=Worker.RUNNING_STATUSES)
        .annotate(heartbeat_age=Now() - F("last_heartbeat"))
        .order_by("worker_id")
    )
    for worker in running:
        age.add_metric([worker.worker_id], max(0.0, worker.heartbeat_age.total_seconds()))
        for field, family in per_worker.items():
            family.add_metric([worker.worker_id], getattr(worker, field))
    return [age, *per_worker.values()]


def breaker_families() -> list:
    """One series per provider row in `embedding_provider_state` (every worker shares it)."""
    state = _gauge(
        "sidecar_provider_breaker_state",
        "Shared circuit breaker: 0 closed, 1 half-open, 2 open.",
        labels=["provider"],
    )
    failures = _gauge(
        "sidecar_provider_consecutive_failures",
        "Consecutive transient failures counted by the breaker.",
        labels=["provider"],
    )
    rows = ProviderLimitState.objects.order_by("provider_key").values_list(
        "provider_key", "breaker_state", "consecutive_failures"
    )
    for provider, breaker_state, consecutive in rows:
        state.add_metric([provider], BREAKER_STATE_VALUES[breaker_state])
        failures.add_metric([provider], consecutive)
    return [state, failures]


def worker_metric_families() -> list:
    """What the workers did, summed over every worker on every machine: the counters and
    histograms `queue_admin/worker_metrics.py` keeps in the database. A counter nobody has
    touched yet is still shown (at 0, when it has no labels) so that alerts can refer to it."""
    stored = worker_metrics.read_all()
    families = []
    for name, documentation in worker_metrics.COUNTERS.items():
        rows = stored.get(name, [])
        label_names = sorted({key for labels, _ in rows for key in labels})
        if not label_names:
            families.append(CounterMetricFamily(name, documentation, value=sum(v for _, v in rows)))
            continue
        family = CounterMetricFamily(name, documentation, labels=label_names)
        for labels, value in rows:
            family.add_metric([labels.get(key, "") for key in label_names], value)
        families.append(family)
    for name, (documentation, bounds) in worker_metrics.HISTOGRAMS.items():
        cumulative = {labels["le"]: value for labels, value in stored.get(f"{name}_bucket", [])}
        buckets = [(str(bound), cumulative.get(str(bound), 0.0)) for bound in bounds]
        buckets.append(("+Inf", cumulative.get("+Inf", 0.0)))
        total = sum(value for _, value in stored.get(f"{name}_sum", []))
        families.append(HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total))
    return families


def database_families() -> list:
    """Every figure that needs the database, read in one transaction with a statement timeout."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(STATEMENT_TIMEOUT_MS)])
        return [*queue_families(), *worker_families(), *breaker_families(), *worker_metric_families()]


class SidecarCollector(Collector):
    """All of Sidecar's metrics, computed when scraped."""

    def collect(self):
        started = time.monotonic()
        try:
            families, up = database_families(), 1
        except Exception as exc:  # the scrape must still answer, with sidecar_up 0
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            logger.warning(
                "metrics: the database could not be read: %s", scrub(f"{type(exc).__name__}: {first_line}")
            )
            # A broken connection must not be reused by the next scrape.
            connection.close_if_unusable_or_obsolete()
            families, up = [], 0
        yield _gauge("sidecar_up", "1 when the database answered this scrape, else 0.", up)
        yield from families
        yield _gauge(
            "sidecar_scrape_duration_seconds", "Time taken to read the metrics.", time.monotonic() - started
        )


REGISTRY = CollectorRegistry()
REGISTRY.register(SidecarCollector())


def exposition() -> bytes:
    """The Prometheus text format of every metric."""
    return generate_latest(REGISTRY)


def _client_allowed(remote_addr: str) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS)


def check_access(request) -> tuple[int, str] | None:
    """None when the request may read the metrics, else ``(status, plain-text message)``.

    Steps: refuse (403) a client outside METRICS_ALLOWED_IPS when that is set; refuse (403)
    everyone when METRICS_TOKEN is unset; refuse (401) a missing or wrong bearer token.
    """
    if settings.METRICS_ALLOWED_IPS and not _client_allowed(request.META.get("REMOTE_ADDR", "")):
        return 403, "This address may not read /metrics (METRICS_ALLOWED_IPS).\n"
    token = settings.METRICS_TOKEN
    if not token:
        return 403, "/metrics is off: set METRICS_TOKEN and send it as 'Authorization: Bearer <token>'.\n"
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 401, "Send 'Authorization: Bearer <METRICS_TOKEN>'.\n"
    return None
