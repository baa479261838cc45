"""Drains per machine: `max_concurrent_workers` caps each machine's drains, so a new machine
adds its own without any setting changing, and the schedule queues enough for every machine."""

import signal
import socket

import pytest
from django_q.models import OrmQ

from queue_admin import registry, tasks
from queue_admin.management.commands import qcluster
from queue_admin.models import Worker
from queue_admin.worker import QueueWorker
from tests.fakes import FakeEmbedderForQueueTests
from tests.helpers import set_config

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_config")]


def alive_drain(host: str, n: int) -> Worker:
    return Worker.objects.create(worker_id=f"{host}:{n}:drain:abc{n}", hostname=host, pid=n, status="idle")


def test_the_cap_counts_this_machines_drains_only():
    set_config(max_concurrent_workers=2)
    alive_drain("other-machine", 1), alive_drain("other-machine", 2)
    with QueueWorker(FakeEmbedderForQueueTests(), name="drain", max_alive=2) as first:
        assert first.registered  # the other machine's two drains leave this machine's places free
        with QueueWorker(FakeEmbedderForQueueTests(), name="drain", max_alive=2) as second:
            assert second.registered
            with QueueWorker(FakeEmbedderForQueueTests(), name="drain", max_alive=2) as third:
                assert not third.registered  # this machine's two places are taken
    here = Worker.objects.filter(hostname=socket.gethostname(), worker_id__contains=":drain:")
    assert here.count() == 2 and not here.filter(status__in=["active", "idle"]).exists()


def test_the_schedule_queues_drains_for_every_machine_seen_and_one_more():
    set_config(max_concurrent_workers=2)
    OrmQ.objects.all().delete()
    assert tasks.keep_drains_running() == 2  # no machine seen yet: places for one newcomer
    alive_drain("machine-a", 1), alive_drain("machine-b", 2)
    assert registry.recent_hosts() == 2
    # 2 machines seen + 1 → 6 places; 2 drains alive → 4 more.
    assert tasks.keep_drains_running() == 4
    assert OrmQ.objects.count() == 6
    set_config(queue_enabled=False)
    assert tasks.keep_drains_running() == 0


def test_a_drain_handed_out_after_the_cluster_began_to_stop_does_not_start():
    previous = signal.signal(qcluster.STOP_DRAINS_SIGNAL, tasks.note_cluster_stopping)
    try:
        signal.raise_signal(qcluster.STOP_DRAINS_SIGNAL)  # the cluster's stop reached this idle process
        assert tasks.drain(budget_seconds=60) == {"started": False, "reason": "the cluster is stopping"}
        assert not Worker.objects.exists()  # it never registered, let alone claimed
    finally:
        signal.signal(qcluster.STOP_DRAINS_SIGNAL, previous)
        tasks.cluster_stopping.clear()
