"""The workers' registry (`embedding_queue_workers`): who is alive, what they did.

Each worker registers, heartbeats from a background thread at the configured interval
(renewing the leases of what it holds), records its counts after every batch, and says
goodbye when its run ends (*finished*). A worker silent for three intervals is marked *dead*
by whichever worker notices; its expired leases are reclaimed the same way.

`health_conditions` is the one definition of a worker's health (ok, late, dead, finished) that
the workers page, the dashboard, /readyz, /metrics and queue_status all count by.
"""

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import psutil
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Q, QuerySet, Value, When
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy

from queue_admin import config, queue_sql
from queue_admin.config_schema import QueueSettings
from queue_admin.models import Worker

logger = logging.getLogger("sidecar.worker")

# Late after this many heartbeat intervals of silence, dead after SILENT_INTERVALS_BEFORE_DEAD.
LATE_AFTER_INTERVALS = 1.5
SILENT_INTERVALS_BEFORE_DEAD = 3
# A death stays news (the dashboard in red, /readyz "warn") this long after the last heartbeat,
# or until a person clears the worker's row.
RECENTLY_DEAD_MINUTES = 60
OK, LATE, DEAD, FINISHED = "ok", "late", "dead", "finished"
HEALTH_LABELS = {
    OK: gettext_lazy("heartbeating on time"),
    LATE: gettext_lazy("late: silent for over 1.5 heartbeat intervals"),
    DEAD: gettext_lazy("dead: stopped heartbeating without saying goodbye"),
    FINISHED: gettext_lazy("finished: ended its run normally"),
}
# Reclaiming is cheap (a partial index) but need not run on every batch of every worker.
RECLAIM_EVERY_SECONDS = 5.0
_last_reclaim = {"at": float("-inf")}


def register(worker_id: str, *, group: str | None = None, limit: int | None = None) -> bool:
    """Add the worker to the registry; returns False (and adds nothing) when `limit` workers of
    `group` (a substring of their ids) are already alive on this machine.

    The limit is per machine (host name): a machine's clusters run at most `limit` drains, so
    adding a machine adds its drains without any setting changing. The count and the insert
    are serialised by a transaction-level advisory lock, so two drain tasks starting at once
    cannot both take the last place.
    """
    with transaction.atomic():
        if limit is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('sidecar-worker-registry'))")
            here = alive_workers(group).filter(hostname=socket.gethostname())
            if here.count() >= limit:
                # Full, unless some of this host's places are held by processes that are gone.
                free_places_of_dead_local_workers(group)
                if here.count() >= limit:
                    return False
        Worker.objects.update_or_create(
            worker_id=worker_id,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "status": Worker.Status.IDLE,
                "last_heartbeat": Now(),
            },
        )
    logger.info("worker %s started", worker_id)
    return True


def health_conditions(queue_settings: QueueSettings | None = None) -> dict[str, Q]:
    """Each health (OK, LATE, DEAD, FINISHED) as a condition on registry rows, judged by the
    database's clock (the one the workers stamp their heartbeats with). Every worker row meets
    exactly one."""
    interval = timedelta(milliseconds=(queue_settings or config.current()).worker_heartbeat_interval_ms)
    running = Q(status__in=Worker.RUNNING_STATUSES)
    finished = Q(status=Worker.Status.FINISHED)
    on_time = Q(last_heartbeat__gte=Now() - interval * LATE_AFTER_INTERVALS)
    heard_from = Q(last_heartbeat__gte=Now() - interval * SILENT_INTERVALS_BEFORE_DEAD)
    return {
        OK: running & on_time,
        LATE: running & heard_from & ~on_time,
        # Silent but not yet marked (no worker has looked since) is dead already; so is any
        # other status (an older worker's "stopped" during a rolling upgrade).
        DEAD: (~running & ~finished) | (running & ~heard_from),
        FINISHED: finished,
    }


def with_health(queryset: QuerySet) -> QuerySet:
    """Annotate `health` (OK, LATE, DEAD or FINISHED) on a Worker queryset."""
    conditions = health_conditions()
    return queryset.annotate(
        health=Case(
            *(When(condition, then=Value(name)) for name, condition in conditions.items()),
            output_field=CharField(),
        )
    )


def alive_workers(group: str | None = None):
    """Workers heartbeating (on time or late, not yet dead), optionally of a group."""
    conditions = health_conditions()
    alive = Worker.objects.filter(conditions[OK] | conditions[LATE])
    return alive.filter(worker_id__contains=group) if group else alive


@dataclass(frozen=True)
class WorkerCounts:
    live: int  # heartbeating: on time or late
    late: int  # of the live, late
    dead_recently: int  # dead, with a last heartbeat in the last RECENTLY_DEAD_MINUTES
    finished: int  # ended their run normally, kept until the cleanup schedule removes them


def worker_counts() -> WorkerCounts:
    """The registry by health, in one statement over the (small) workers table."""
    conditions = health_conditions()
    recently = Q(last_heartbeat__gte=Now() - timedelta(minutes=RECENTLY_DEAD_MINUTES))
    return WorkerCounts(
        **Worker.objects.aggregate(
            live=Count("pk", filter=conditions[OK] | conditions[LATE]),
            late=Count("pk", filter=conditions[LATE]),
            dead_recently=Count("pk", filter=conditions[DEAD] & recently),
            finished=Count("pk", filter=conditions[FINISHED]),
        )
    )


def recent_hosts(minutes: int = 10) -> int:
    """How many machines had a worker heartbeat in the last `minutes` (any status)."""
    return (
        Worker.objects.filter(last_heartbeat__gte=Now() - timedelta(minutes=minutes))
        .values("hostname")
        .distinct()
        .count()
    )


def free_places_of_dead_local_workers(group: str | None = None) -> int:
    """Mark dead the workers registered from this host whose process no longer exists (killed,
    crashed); returns how many.

    A killed worker counts as alive until it has been silent for three heartbeat intervals, and
    until then its place under `max_concurrent_workers` looks taken: a cluster restarted after a
    crash would wait that long, and then for the next schedule tick, before it drains again. On
    its own host a missing process id is proof enough. A reused id keeps the worker counted as
    alive, which only means waiting for the silence as before. Its items still come back when
    their lease expires.
    """
    here = socket.gethostname()
    dead = [
        worker_id
        for worker_id, pid in alive_workers(group).filter(hostname=here).values_list("worker_id", "pid")
        if _process_gone(pid)
    ]
    if dead:
        Worker.objects.filter(worker_id__in=dead).update(
            status=Worker.Status.DEAD, current_batch_id=None, updated_at=Now()
        )
        logger.warning("marked %s workers of this host dead: their processes are gone", len(dead))
    return len(dead)


def _process_gone(pid: int) -> bool:
    try:  # a killed process whose parent died too stays a zombie until init reaps it
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to inspect: assume it lives
        return False


def mark_finished(worker_id: str) -> None:
    """The worker's goodbye at the end of its run."""
    Worker.objects.filter(worker_id=worker_id).update(
        status=Worker.Status.FINISHED, current_batch_id=None, updated_at=Now()
    )
    logger.info("worker %s finished", worker_id)


def delete_finished(older_than_hours: int) -> int:
    """Delete the rows of workers that finished more than `older_than_hours` ago; returns how
    many. Dead workers are kept until a person clears them: a death is worth a look."""
    deleted, _ = Worker.objects.filter(
        status=Worker.Status.FINISHED, updated_at__lt=Now() - timedelta(hours=older_than_hours)
    ).delete()
    return deleted


def set_batch(worker_id: str, batch_id) -> None:
    Worker.objects.filter(worker_id=worker_id).update(
        status=Worker.Status.ACTIVE, current_batch_id=batch_id, last_heartbeat=Now(), updated_at=Now()
    )


def record_batch(worker_id: str, batch_id, report, elapsed_ms: int) -> None:
    """Count a written batch. The worker is idle now unless it has claimed another batch
    meanwhile (a lane claims its next batch while one is at the provider)."""
    this_batch = Q(current_batch_id=batch_id)
    Worker.objects.filter(worker_id=worker_id).update(
        status=Case(When(this_batch, then=Value(Worker.Status.IDLE)), default=F("status")),
        current_batch_id=Case(When(this_batch, then=None), default=F("current_batch_id")),
        tasks_processed=F("tasks_processed") + report.completed,
        total_processing_time_ms=F("total_processing_time_ms") + elapsed_ms,
        error_count=F("error_count") + report.failed + report.retried,
        rate_limit_count=F("rate_limit_count") + report.rate_limited,
        last_heartbeat=Now(),
        updated_at=Now(),
    )


def reclaim_and_expire(queue_settings: QueueSettings) -> None:
    """Every few seconds: take back expired leases and mark silent workers dead."""
    now = time.monotonic()
    if now - _last_reclaim["at"] < RECLAIM_EVERY_SECONDS:
        return
    _last_reclaim["at"] = now
    requeued, failed = queue_sql.reclaim_expired_leases()
    if requeued or failed:
        logger.warning("reclaimed %s items with expired leases (%s moved to failed)", requeued, failed)
    silent = Worker.objects.filter(health_conditions(queue_settings)[DEAD]).exclude(status=Worker.Status.DEAD)
    marked = silent.update(status=Worker.Status.DEAD, current_batch_id=None, updated_at=Now())
    if marked:
        logger.warning("marked %s silent workers dead", marked)


class Heartbeat(threading.Thread):
    """Renews the worker's heartbeat and leases every `worker_heartbeat_interval_ms`."""

    def __init__(self, worker_id: str):
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self.worker_id = worker_id
        self._stopping = threading.Event()

    def run(self):
        try:
            while not self._stopping.wait(config.current().worker_heartbeat_interval_ms / 1000):
                self.beat()
        finally:
            connection.close()  # this thread's own connection

    def beat(self):
        try:
            queue_settings = config.current()
            queue_sql.heartbeat(self.worker_id, queue_settings.lease_seconds)
            Worker.objects.filter(worker_id=self.worker_id).update(last_heartbeat=Now(), updated_at=Now())
        except Exception:  # a database blip must not kill the thread; the next beat retries
            logger.exception("heartbeat of %s failed", self.worker_id)
            connection.close()

    def stop(self):
        self._stopping.set()
        self.join(timeout=5)
