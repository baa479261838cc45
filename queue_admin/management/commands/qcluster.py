"""django-q2's `qcluster`, with one addition: on SIGTERM or SIGINT the running drain tasks
finish the batch in hand at once, instead of at the end of their time budget.

django-q2 stops a cluster by waiting for every worker process to finish its current task; a
drain task would otherwise keep it waiting up to DRAIN_BUDGET_SECONDS. So the cluster's main
process tells its descendants with SIGUSR1 — which every cluster process ignores (set before
the processes are forked) except a running drain task, which takes it as "stop after this
batch" (queue_admin/tasks.py). queue_admin is listed before django_q in INSTALLED_APPS so
that this command is the one `manage.py qcluster` runs.
"""

import signal

import psutil
from django_q.cluster import Cluster
from django_q.management.commands import qcluster

STOP_DRAINS_SIGNAL = signal.SIGUSR1


class _Cluster(Cluster):
    def sig_handler(self, signum, frame):
        for child in psutil.Process().children(recursive=True):
            try:
                child.send_signal(STOP_DRAINS_SIGNAL)
            except psutil.NoSuchProcess:
                pass
        super().sig_handler(signum, frame)


class Command(qcluster.Command):
    def handle(self, *args, **options):
        signal.signal(STOP_DRAINS_SIGNAL, signal.SIG_IGN)  # inherited by the forked cluster processes
        qcluster.Cluster = _Cluster  # the parent command builds its Cluster from this name
        super().handle(*args, **options)
