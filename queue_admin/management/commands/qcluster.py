"""django-q2's `qcluster`, with three additions: it queues its drain tasks as soon as it has
started; on SIGTERM or SIGINT the running drain tasks finish the request in hand at once and
give the rest of their batch back, instead of running to the end of their time budget; and a
SIGTERM sent to every process of the cluster stops it as cleanly as one sent to the main
process.

Without the first, a cluster started (or restarted after a crash) would sit idle until its
scheduler next ran the "keep drains running" schedule: django-q2 looks at schedules every 30 s,
and that one is due once a minute.

django-q2 stops a cluster by waiting for every worker process to finish its current task; a
drain task would otherwise keep it waiting up to DRAIN_BUDGET_SECONDS. So the cluster's main
process tells its descendants with SIGUSR1 — which every cluster process notes (set before
the processes are forked), so that a drain task its pusher had already handed out does not
start, and which a running drain task takes as "stop after this batch" (queue_admin/tasks.py). queue_admin is listed before django_q in INSTALLED_APPS so
that this command is the one `manage.py qcluster` runs.

SIGTERM to the whole process group (systemd's default KillMode, `kill -TERM -PGID`, an init
that forwards to the group) would otherwise kill django-q2's sentinel, pusher, monitor and idle
workers where they stand: a worker killed while waiting on the task queue holds the queue's
lock forever, so the workers that ran drains never receive their stop and are left behind as
orphans, and the main process can hang on an event the dead sentinel held (the graceful
shutdown suite). So every cluster process but the main one ignores SIGTERM, and stopping stays
the main process's job, done in order. A running drain still hears SIGTERM (it sets its own
handler) and stops after the request in hand. django-q2 ends a task that outlives its timeout
from inside the worker (SIGALRM), which this leaves alone.
"""

import logging
import signal

import psutil
from django.db import connections
from django_q import cluster as q_cluster
from django_q.cluster import Cluster, Sentinel
from django_q.management.commands import qcluster

from queue_admin.tasks import keep_drains_running, note_cluster_stopping

logger = logging.getLogger("sidecar.tasks")

STOP_DRAINS_SIGNAL = signal.SIGUSR1


class _Cluster(Cluster):
    def start(self) -> int:
        pid = super().start()  # the cluster's processes are forked by now: the database is ours
        try:
            queued = keep_drains_running()
            logger.info("cluster started: queued %s drain tasks", queued)
        except Exception:  # the schedule will queue them later; a cluster must not die of this
            logger.exception("could not queue drain tasks at start")
        finally:
            connections.close_all()  # this process only waits from here on
        return pid

    def sig_handler(self, signum, frame):
        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(STOP_DRAINS_SIGNAL)
            except psutil.NoSuchProcess:
                pass
        super().sig_handler(signum, frame)


class _Sentinel(Sentinel):
    def start(self):
        # Sentinel.__init__ has just set SIGTERM back to the default; the pusher, monitor and
        # workers it forks from here inherit "ignore".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        super().start()


class Command(qcluster.Command):
    def handle(self, *args, **options):
        # Inherited by the forked cluster processes: one that is not running a drain notes that
        # the cluster is stopping, so it starts none (a drain task may still reach it).
        signal.signal(STOP_DRAINS_SIGNAL, note_cluster_stopping)
        qcluster.Cluster = _Cluster  # the parent command builds its Cluster from this name
        q_cluster.Sentinel = _Sentinel  # and Cluster.start its sentinel from this one
        super().handle(*args, **options)
