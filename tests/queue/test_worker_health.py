"""Worker health, with real worker processes: a worker that ends its run is *finished*, one
SIGKILLed becomes *dead* once its heartbeats stop, one frozen (SIGSTOP) is *late* — and the
dashboard tile, the workers page, /readyz and /metrics count the same workers."""

import os
import re
import signal
import subprocess
import sys

import pytest

from queue_admin import registry, tasks
from queue_admin.models import Worker
from tests.helpers import AUTH, ROOT, database_url, samples, set_config, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = AUTH["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    settings.METRICS_ALLOWED_IPS = []


def start_worker(tmp_path, seconds: float):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", "--log", str(tmp_path / "sent.txt"), "--seconds", str(seconds)],
        cwd=ROOT, env=dict(os.environ, DATABASE_URL=database_url(), DEBUG="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return process, process.stdout.readline().split()[1]  # "started <worker id>"


def status_of(worker_id: str) -> str:
    return Worker.objects.get(pk=worker_id).status


@pytest.mark.slow
def test_finished_dead_and_late_workers_are_counted_alike_everywhere(tmp_path, admin_client, sql):
    set_config(worker_heartbeat_interval_ms=1000)  # dead after 3 s of silence
    retiring, retiring_id = start_worker(tmp_path, seconds=0.5)
    frozen, frozen_id = start_worker(tmp_path, seconds=120)
    killed, killed_id = start_worker(tmp_path, seconds=120)
    try:
        assert retiring.wait(timeout=60) == 0
        assert status_of(retiring_id) == "finished"  # said goodbye: turnover, not a death

        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        # The frozen-to-be worker is still running: it notices the silence and marks it dead.
        wait_until(lambda: status_of(killed_id) == "dead", 30, lambda: f"still {status_of(killed_id)}")

        frozen.send_signal(signal.SIGSTOP)
        # Late: silent for 50 s of a 30 s interval (1.5 to 3 intervals), without waiting 50 s.
        set_config(worker_heartbeat_interval_ms=30_000)
        sql("UPDATE embedding_queue_workers SET last_heartbeat = now() - interval '50 seconds' WHERE worker_id = %s",
            [frozen_id])  # fmt: skip

        assert registry.worker_counts() == registry.WorkerCounts(live=1, late=1, dead_recently=1, finished=1)

        tile = re.search(
            r'<div class="([^"]*)" id="card-workers">(.*?)</div>',
            admin_client.get("/admin/").content.decode(),
            re.S,
        )
        assert tile and 'data-workers="live">1</a>' in tile.group(2)
        assert 'href="/admin/queue_admin/worker/?health=late" data-workers="late">1 late</a>' in tile.group(2)
        assert 'href="/admin/queue_admin/worker/?health=dead" data-workers="dead">1 died</a>' in tile.group(2)
        assert "sidecar-warn" in tile.group(1)

        page = admin_client.get("/admin/queue_admin/worker/").content.decode()
        listed = page.split('id="result_list"')[1].split("</table>")[0]
        assert f">{frozen_id}</a>" in listed and f">{killed_id}</a>" in listed and retiring_id not in listed
        assert 'class="sidecar-heartbeat late"' in listed and 'class="sidecar-heartbeat dead"' in listed
        finished = page.split('id="finished-workers"')[1].split("</details>")[0]
        assert "1 worker finished normally" in finished and retiring_id in finished
        for health, worker_id in (("late", frozen_id), ("dead", killed_id), ("finished", retiring_id)):
            response = admin_client.get("/admin/queue_admin/worker/", {"health": health})
            assert [w.pk for w in response.context["cl"].result_list] == [worker_id], health

        workers = admin_client.get("/readyz").json()["components"]["workers"]
        assert workers["status"] == "warn"
        assert (
            workers["detail"].startswith("1 live worker; 1 late")
            and "1 died in the last hour" in workers["detail"]
        )

        figures = samples(admin_client.get("/metrics", **AUTH))
        assert figures[("sidecar_workers_live", ())] == 1
        assert figures[("sidecar_workers_late", ())] == 1
        assert figures[("sidecar_workers_dead_last_hour", ())] == 1
    finally:
        for process in (retiring, frozen, killed):
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)


def test_retired_drains_are_deleted_after_the_retention_period_and_dead_ones_kept(sql):
    for worker_id, status in (
        ("old-finished", "finished"),
        ("new-finished", "finished"),
        ("old-dead", "dead"),
    ):
        Worker.objects.create(worker_id=worker_id, hostname="h", pid=1, status=status)
    sql("UPDATE embedding_queue_workers SET updated_at = now() - interval '25 hours', "
        "last_heartbeat = now() - interval '25 hours' WHERE worker_id LIKE 'old-%%'")  # fmt: skip
    assert tasks.delete_old_completed() == 0  # queue items; the default retention is 24 hours
    assert set(Worker.objects.values_list("pk", flat=True)) == {"new-finished", "old-dead"}


def test_a_status_written_by_an_older_worker_counts_as_dead_not_as_an_error(admin_client):
    # During a rolling upgrade a worker of the previous release still says goodbye as "stopped".
    Worker.objects.create(worker_id="old-release", hostname="h", pid=1, status="stopped")
    assert registry.worker_counts() == registry.WorkerCounts(live=0, late=0, dead_recently=1, finished=0)
    page = admin_client.get("/admin/queue_admin/worker/").content.decode()
    assert 'class="sidecar-heartbeat dead"' in page


def test_the_item_list_filters_by_running_and_dead_workers_only(admin_client):
    for worker_id, status in (("running", "idle"), ("gone", "dead"), ("retired", "finished")):
        Worker.objects.create(worker_id=worker_id, hostname="h", pid=1, status=status)
    page = admin_client.get("/admin/queue_admin/queueitem/").content.decode()
    assert "?worker=running" in page and "?worker=gone" in page and "?worker=retired" not in page


def test_a_healthy_registry_reads_ok_everywhere(admin_client):
    Worker.objects.create(worker_id="on-time", hostname="h", pid=1, status="idle")
    assert registry.worker_counts() == registry.WorkerCounts(live=1, late=0, dead_recently=0, finished=0)
    workers = admin_client.get("/readyz").json()["components"]["workers"]
    assert workers == {"status": "ok", "detail": "1 live worker"}
    tile = re.search(
        r'<div class="([^"]*)" id="card-workers">(.*?)</div>',
        admin_client.get("/admin/").content.decode(),
        re.S,
    )
    assert "heartbeating on time" in tile.group(2) and "sidecar-warn" not in tile.group(1)
