"""Real worker processes against one database: each document embedded once, and a worker
killed with SIGKILL mid-batch loses nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from documents.models import DocumentEmbedding, SourceDocument
from queue_admin.models import QueueItem
from tests.helpers import ROOT, database_url, set_config, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


def start_worker(log: Path, *args):
    env = dict(os.environ, DATABASE_URL=database_url(), DEBUG="1")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", "--log", str(log), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def sent_texts(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.slow
def test_four_worker_processes_drain_2000_documents_each_embedded_once(tmp_path):
    docs = SourceDocument.objects.bulk_create(
        SourceDocument(content=f"document number {n}") for n in range(2000)
    )
    log = tmp_path / "sent.txt"
    workers = [start_worker(log, "--until-empty") for _ in range(4)]
    completed_by_each = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        completed_by_each.append(int(out.split("done ")[1]))
    sent = sent_texts(log)
    assert len(sent) == 2000 and set(sent) == {d.content for d in docs}  # no document sent twice
    assert sum(completed_by_each) == 2000
    assert QueueItem.objects.filter(status="completed").count() == 2000
    assert DocumentEmbedding.objects.count() == 2000


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(tmp_path):
    set_config(lease_seconds=10, batch_size=8)
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"kill test {n}") for n in range(20))
    log = tmp_path / "sent.txt"
    victim = start_worker(log, "--slow", "30", "--seconds", "60")
    victim_id = victim.stdout.readline().split()[1]
    deadline = time.monotonic() + 30
    while not sent_texts(log):  # it has claimed a batch and is inside the model call
        assert time.monotonic() < deadline, "the worker never started embedding"
        time.sleep(0.1)
    held = set(
        QueueItem.objects.filter(status="processing", worker_id=victim_id).values_list("id", flat=True)
    )
    assert len(held) == 8
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()

    # A second worker finishes everything once the dead worker's lease has expired.
    survivor = start_worker(log, "--seconds", "40")
    deadline = time.monotonic() + 60
    while QueueItem.objects.exclude(status="completed").exists():
        assert time.monotonic() < deadline, list(QueueItem.objects.values_list("status", "worker_id"))
        time.sleep(0.5)
    survivor.send_signal(signal.SIGTERM)
    survivor.communicate(timeout=30)

    assert DocumentEmbedding.objects.count() == 20  # one chunk each, no duplicates
    assert set(DocumentEmbedding.objects.values_list("document_id", flat=True)) == {d.id for d in docs}
    # the dead worker's items were reclaimed once (counted as an attempt), then completed
    assert set(QueueItem.objects.filter(retry_count=1).values_list("id", flat=True)) == held
    assert not QueueItem.objects.filter(status="processing").exists()


def test_a_write_never_waits_on_an_application_statement_holding_its_documents():
    """An application statement updating several documents locks them in its own order; a
    worker writing a batch that holds some of them while waiting for another would deadlock
    with it, and PostgreSQL may then cancel the application's side. The worker backs off
    instead, so the application's write goes straight through and the batch is written after."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    from queue_admin.worker import QueueWorker
    from tests.fakes import FakeEmbedderForQueueTests

    first, second = sorted(
        SourceDocument.objects.bulk_create([SourceDocument(content="alpha"), SourceDocument(content="beta")]),
        key=lambda d: d.id,
    )
    with psycopg.connect(database_url()) as application:
        application.execute("SET lock_timeout = '10s'")
        # The application holds the later document (the worker locks in id order) ...
        application.execute("UPDATE source_documents SET title = 'edited' WHERE id = %s", [second.id])
        with QueueWorker(FakeEmbedderForQueueTests(), name="test") as worker, ThreadPoolExecutor(1) as pool:
            writing = pool.submit(worker.process_one_batch)
            wait_until(
                lambda: QueueItem.objects.filter(status="processing").exists(), 30, lambda: "not claimed"
            )
            # ... and, once the worker is writing, updates the earlier one too
            time.sleep(1.5)  # past deadlock_timeout (1 s): a cycle would have been found by now
            started = time.monotonic()
            application.execute(
                "UPDATE source_documents SET content = 'alpha, edited' WHERE id = %s", [first.id]
            )
            waited = time.monotonic() - started
            application.commit()
            report = writing.result(timeout=60)
            pool.submit(lambda: connection.close()).result()  # the thread's session
    assert waited < 1, f"the application's update waited {waited:.1f} s on the worker"
    assert report.claimed == 2 and report.completed == 1 and report.requeued == 1
    assert DocumentEmbedding.objects.get().document_id == second.id
    assert QueueItem.objects.get(document=first, status="pending")
