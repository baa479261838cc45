"""The workers' registry (`embedding_queue_workers`): who is alive, what they did.

Each worker registers, heartbeats from a background thread at the configured interval
(renewing the leases of what it holds), and records its counts after every batch. A worker
silent for three intervals is marked stopped by whichever worker notices; its expired leases
are reclaimed the same way.
"""

import logging
import os
import socket
import threading
import time
from datetime import timedelta

import psutil
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Now

from queue_admin import config, queue_sql
from queue_admin.models import Worker

logger = logging.getLogger("sidecar.worker")

SILENT_INTERVALS_BEFORE_STOPPED = 3
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


def alive_workers(group: str | None = None):
    """Workers that heartbeat on time (not silent for three intervals), optionally of a group."""
    silent_ms = config.current()["worker_heartbeat_interval_ms"] * SILENT_INTERVALS_BEFORE_STOPPED
    alive = Worker.objects.filter(
        status__in=[Worker.Status.ACTIVE, Worker.Status.IDLE],
        last_heartbeat__gte=Now() - timedelta(milliseconds=silent_ms),
    )
    return alive.filter(worker_id__contains=group) if group else alive


def recent_hosts(minutes: int = 10) -> int:
    """How many machines had a worker heartbeat in the last `minutes` (any status)."""
    return (
        Worker.objects.filter(last_heartbeat__gte=Now() - timedelta(minutes=minutes))
        .values("hostname")
        .distinct()
        .count()
    )


def free_places_of_dead_local_workers(group: str | None = None) -> int:
    """Mark stopped the workers registered from this host whose process no longer exists (killed,
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
            status=Worker.Status.STOPPED, current_batch_id=None, updated_at=Now()
        )
        logger.warning("marked %s workers of this host stopped: their processes are gone", len(dead))
    return len(dead)


def _process_gone(pid: int) -> bool:
    try:  # a killed process whose parent died too stays a zombie until init reaps it
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to inspect: assume it lives
        return False


def mark_stopped(worker_id: str) -> None:
    Worker.objects.filter(worker_id=worker_id).update(
        status=Worker.Status.STOPPED, current_batch_id=None, updated_at=Now()
    )
    logger.info("worker %s stopped", worker_id)


def set_batch(worker_id: str, batch_id) -> None:
    Worker.objects.filter(worker_id=worker_id).update(
        status=Worker.Status.ACTIVE, current_batch_id=batch_id, last_heartbeat=Now(), updated_at=Now()
    )


def record_batch(worker_id: str, report, elapsed_ms: int) -> None:
    Worker.objects.filter(worker_id=worker_id).update(
        status=Worker.Status.IDLE,
        current_batch_id=None,
        tasks_processed=F("tasks_processed") + report.completed,
        total_processing_time_ms=F("total_processing_time_ms") + elapsed_ms,
        error_count=F("error_count") + report.failed + report.retried,
        rate_limit_count=F("rate_limit_count") + report.rate_limited,
        last_heartbeat=Now(),
        updated_at=Now(),
    )


def reclaim_and_expire(settings: dict) -> None:
    """Every few seconds: take back expired leases and mark silent workers stopped."""
    now = time.monotonic()
    if now - _last_reclaim["at"] < RECLAIM_EVERY_SECONDS:
        return
    _last_reclaim["at"] = now
    requeued, failed = queue_sql.reclaim_expired_leases()
    if requeued or failed:
        logger.warning("reclaimed %s items with expired leases (%s moved to failed)", requeued, failed)
    silent_ms = settings["worker_heartbeat_interval_ms"] * SILENT_INTERVALS_BEFORE_STOPPED
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE embedding_queue_workers SET status = 'stopped', current_batch_id = NULL, updated_at = now()
                WHERE status IN ('active', 'idle')
                  AND last_heartbeat < statement_timestamp() - make_interval(secs => %s / 1000.0)""",
            [silent_ms],
        )
        if cursor.rowcount:
            logger.warning("marked %s silent workers stopped", cursor.rowcount)


class Heartbeat(threading.Thread):
    """Renews the worker's heartbeat and leases every `worker_heartbeat_interval_ms`."""

    def __init__(self, worker_id: str):
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self.worker_id = worker_id
        self._stopping = threading.Event()

    def run(self):
        try:
            while not self._stopping.wait(config.current()["worker_heartbeat_interval_ms"] / 1000):
                self.beat()
        finally:
            connection.close()  # this thread's own connection

    def beat(self):
        try:
            settings = config.current()
            queue_sql.heartbeat(self.worker_id, settings["lease_seconds"])
            Worker.objects.filter(worker_id=self.worker_id).update(last_heartbeat=Now(), updated_at=Now())
        except Exception:  # a database blip must not kill the thread; the next beat retries
            logger.exception("heartbeat of %s failed", self.worker_id)
            connection.close()

    def stop(self):
        self._stopping.set()
        self.join(timeout=5)
