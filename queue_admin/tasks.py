"""django-q2 tasks: thin adapters over the worker loop, backfill and cleanup.

The work items stay in our queue table; django-q2 only runs *drain* tasks, each a
QueueWorker that claims batches for up to DRAIN_BUDGET_SECONDS (polling every half second when
idle, so work from any writer starts within about half a second) and then hands over to a
successor. The schedules (migration 0005) keep `max_concurrent_workers` drains alive on
every machine, reconcile what the triggers missed, and delete old completed items.
"""

import faulthandler
import logging
import signal
import threading
import time

from django.conf import settings

from documents.models import Source
from documents.providers.factory import get_provider
from queue_admin import backfill, config, freshness, provider_batches, registry, sources, vector_indexes
from queue_admin.worker import QueueWorker

logger = logging.getLogger("sidecar.tasks")

# Below Q_CLUSTER["timeout"] (django-q2 kills a task that outlives it) with room for the
# batch in hand; short enough that a cluster asked to stop is not kept waiting long.
DRAIN_BUDGET_SECONDS = 120
assert DRAIN_BUDGET_SECONDS + 60 < settings.Q_CLUSTER["timeout"] < settings.Q_CLUSTER["retry"]
# A drain still running this long after its stop signal logs its threads' stacks (see drain).
STOP_REPORT_SECONDS = 20


# Set in a cluster process once the cluster's stop signal reached it (SIGUSR1, see
# note_cluster_stopping), or a drain in it was told to stop: no drain starts there after that.
cluster_stopping = threading.Event()


def note_cluster_stopping(*_) -> None:
    """The SIGUSR1 handler of every cluster process that is not running a drain
    (management/commands/qcluster.py installs it before the cluster forks)."""
    cluster_stopping.set()


def drain(budget_seconds: float = DRAIN_BUDGET_SECONDS) -> dict:
    """Run one worker for up to `budget_seconds`, unless enough drains are alive already.

    SIGTERM (the cluster stopping, or a timeout) finishes the request in hand, gives the rest
    of the batch back and returns; otherwise a successor is queued so the cluster keeps
    draining.
    """
    if cluster_stopping.is_set():
        # Handed out by the cluster's pusher before it stopped, picked up after the stop
        # signal came: started now, it would hold the stopping cluster for its whole budget.
        return {"started": False, "reason": "the cluster is stopping"}
    queue_settings = config.current()
    worker = QueueWorker(get_provider(), name="drain", max_alive=queue_settings.max_concurrent_workers)

    def stop(signum, _frame):
        if signum == signal.SIGUSR1:  # the cluster stops; a SIGTERM may be this task's timeout only
            cluster_stopping.set()
        worker.stop_requested.set()
        # A drain asked to stop finishes within seconds; if it is still here after
        # STOP_REPORT_SECONDS, every thread's stack goes to stderr to show what holds it.
        faulthandler.dump_traceback_later(STOP_REPORT_SECONDS, exit=False)

    # SIGUSR1: our qcluster is stopping (management/commands/qcluster.py); SIGTERM: a timeout,
    # or a stop signal sent to every process of the cluster.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        with worker:
            if not worker.registered:
                return {"started": False, "reason": "max_concurrent_workers drains are running"}
            report = worker.run(until_empty=False, deadline=time.monotonic() + budget_seconds)
    finally:
        faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not worker.stop_requested.is_set():
        keep_drains_running()
    return {
        "started": True,
        "completed": report.completed,
        "failed": report.failed,
        "claimed": report.claimed,
    }


def keep_drains_running() -> int:
    """Queue enough drain tasks for every machine to fill its `max_concurrent_workers` places;
    returns how many were queued.

    Tasks go to whichever cluster asks the shared broker first, and a busy cluster holds a few
    it cannot start yet, so this asks for every machine seen in the last 10 minutes plus one
    (a machine that has just joined). A drain that finds its machine's places taken exits at
    once, so queuing too many is harmless; queuing too few would leave a machine idle.
    """
    from django_q.tasks import async_task

    queue_settings = config.current()
    if not queue_settings.queue_enabled:
        return 0
    registry.free_places_of_dead_local_workers(":drain:")
    wanted = queue_settings.max_concurrent_workers * (registry.recent_hosts() + 1)
    missing = wanted - registry.alive_workers(":drain:").count()
    for _ in range(max(0, missing)):
        async_task("queue_admin.tasks.drain", group="sidecar-drain")
    return max(0, missing)


def reconcile() -> int:
    """Look at the attached tables (a source whose table changed under it is marked broken),
    queue what the triggers missed, then recount the documents for the dashboard (its snapshot
    of fresh / stale / missing / failed, `freshness.py`)."""
    sources.check_tables()
    model = get_provider().model_id
    queued = backfill.reconcile(model)
    freshness.refresh_snapshot(model)
    return queued


def maintain_vector_indexes() -> list[str]:
    """Start the vector index builds the policy wants now (queue_admin/vector_indexes.py);
    returns the models whose build was started."""
    return vector_indexes.start_due_builds()


def advance_provider_batches() -> dict[str, int]:
    """Send, poll and write the provider batches (queue_admin/provider_batches.py); returns how
    many are in each state."""
    return provider_batches.advance_all()


def delete_old_completed() -> int:
    """Delete completed items, and the rows of workers that finished, older than the retention
    setting; returns how many items were deleted."""
    hours = config.current().queue_cleanup_interval_hours
    deleted = backfill.delete_old_completed(hours)
    workers = registry.delete_finished(hours)
    logger.info("deleted %s completed queue items and %s finished workers", deleted, workers)
    return deleted


# A copy task hands over to a successor after this long: django-q2 kills a task that outlives
# Q_CLUSTER["timeout"].
COPY_TASK_SECONDS = 60
assert COPY_TASK_SECONDS + 60 < settings.Q_CLUSTER["timeout"]


def copy_source_rows(source_id: int, update: bool) -> bool:
    """Copy an attached table's rows into its documents (attach), or re-render them (edit), for
    up to COPY_TASK_SECONDS; then queue a successor that goes on from there."""
    source = Source.objects.filter(pk=source_id).first()
    if source is None or source.state == Source.State.DETACHING:
        return True
    complete = sources.copy_rows(source, update=update, seconds=COPY_TASK_SECONDS)
    if not complete:
        sources.schedule_copy(source, update=update)
    return complete


def finish_detach(source_id: int) -> int:
    """Remove a detached source's documents (its triggers are gone already)."""
    source = Source.objects.filter(pk=source_id).first()
    return sources.finish_detach(source) if source is not None else 0


def sync_source(source_id: int, continues: str = "") -> dict:
    """Sync a file source for up to SYNC_TASK_SECONDS; a successor goes on from there."""
    # Imported here: the parsers and boto3 are heavy, and every drain process imports this module.
    from queue_admin import file_sources

    source = Source.objects.filter(pk=source_id).first()
    if source is None or source.state == Source.State.DETACHING:
        return {"synced": False, "reason": "no such source"}
    report = file_sources.run_sync(source, seconds=file_sources.SYNC_TASK_SECONDS, continues=continues)
    if report is None:
        return {"synced": False, "reason": "another sync of this source is running"}
    if report.running:
        file_sources.schedule_sync(source, continues=report.started_at)
    return {"synced": not report.running, **{k: v for k, v in report.as_dict().items() if k != "failures"}}
