"""Reconciliation queues only what the triggers really missed: a document whose newest item
failed (a dead letter) or was cancelled by a person stays out of the queue, run after run, until
a person retries it or its text changes — in process, and through a running qcluster."""

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from documents.models import SourceDocument
from queue_admin import backfill, document_state, operations, tasks
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker
from tests.fakes import FakeEmbedderForQueueTests
from tests.helpers import database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

MODEL = FakeEmbedderForQueueTests.model_id
LIMIT = 1_000  # EMBEDDING_MAX_DOCUMENT_CHARACTERS in these tests: the smallest allowed
TOO_LONG = "far too long " * 100  # 1,300 characters: the workers dead-letter it at once


def embed_everything():
    with QueueWorker(FakeEmbedderForQueueTests(), name="test") as worker:
        return worker.run()


def dead_letters(document) -> int:
    return QueueItem.objects.filter(document=document, status="failed").count()


@pytest.fixture
def held(settings):
    """Ten good documents embedded; one too long, dead-lettered by the workers; one whose item a
    person cancelled before it was embedded."""
    settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS = LIMIT
    SourceDocument.objects.bulk_create(SourceDocument(content=f"good document {n}") for n in range(10))
    bad = SourceDocument.objects.create(title="bad", content=TOO_LONG)
    cancelled = SourceDocument.objects.create(title="cancelled", content="cancelled before embedding")
    operations.cancel(QueueItem.objects.filter(document=cancelled).values_list("id", flat=True))
    report = embed_everything()
    assert (report.completed, report.failed) == (10, 1)
    assert dead_letters(bad) == 1
    return bad, cancelled


def test_held_documents_stay_out_of_the_queue_across_many_reconciliations(held, caplog):
    bad, cancelled = held
    caplog.set_level(logging.WARNING, logger="sidecar.backfill")
    for _ in range(6):  # half an hour of the 5-minute schedule, a worker running in between
        assert backfill.reconcile(MODEL) == 0
        embed_everything()
    assert dead_letters(bad) == 1
    assert QueueItem.objects.filter(document=cancelled).values_list("status", flat=True).get() == "cancelled"
    assert not QueueItem.objects.filter(status__in=QueueItem.LIVE_STATUSES).exists()
    assert "reconciliation queued" not in caplog.text


def test_what_the_triggers_missed_is_still_queued_beside_held_documents(held, sql):
    sql("ALTER TABLE source_documents DISABLE TRIGGER USER")
    try:
        sql("INSERT INTO source_documents (content) VALUES ('written while the triggers were off')")
    finally:
        sql("ALTER TABLE source_documents ENABLE TRIGGER USER")
    assert backfill.reconcile(MODEL) == 1
    assert QueueItem.objects.get(document__content="written while the triggers were off").priority == "low"


def test_a_retry_puts_a_held_document_back_and_only_once(held):
    bad, cancelled = held
    retried = operations.retry(
        QueueItem.objects.filter(document__in=[bad, cancelled]).values_list("id", flat=True)
    )
    assert retried.changed == 2
    assert backfill.reconcile(MODEL) == 0  # live again: nothing for reconciliation to add
    report = embed_everything()
    assert (report.completed, report.failed) == (1, 1)  # the cancelled one embeds; the bad one fails again
    assert dead_letters(bad) == 1  # the same item, failed again: no second dead letter
    assert backfill.reconcile(MODEL) == 0


def test_an_edit_queues_a_held_document_through_the_trigger(held):
    bad, _ = held
    bad.content = "short enough now"
    bad.save()
    assert QueueItem.objects.filter(document=bad, status="pending").count() == 1
    report = embed_everything()
    assert (report.completed, report.failed) == (1, 0)
    assert backfill.reconcile(MODEL) == 0


def test_the_schedule_function_counts_held_documents_apart(held, settings):
    from documents.providers import factory

    # The schedule selects by the configured model: name the fake's (a TEI provider never called).
    settings.EMBEDDING_PROVIDER, settings.EMBEDDING_BASE_URL = "tei", "http://127.0.0.1:9"
    settings.EMBEDDING_MODEL = MODEL
    factory.get_provider.cache_clear()
    try:
        for _ in range(3):
            assert tasks.reconcile() == 0
        counts = document_state.count_freshness(MODEL)
    finally:
        factory.get_provider.cache_clear()
    assert (counts.fresh, counts.missing, counts.failed, counts.cancelled) == (10, 2, 1, 1)


@pytest.mark.slow
def test_a_running_cluster_reconciles_without_re_queueing_dead_letters(settings):
    """qcluster drains the documents and runs the reconciliation schedule, made due again and
    again (its interval shortened to "now"); the dead letter stays one row."""
    from django_q.brokers import get_broker
    from django_q.models import Schedule, Success
    from django_q.scheduler import scheduler

    from documents.providers import factory
    from tests.fault_server import FakeEmbedder

    factory.get_provider.cache_clear()
    with FakeEmbedder(dimensions=384) as service:
        env = dict(
            os.environ, DATABASE_URL=database_url(), DEBUG="1", EMBEDDING_PROVIDER="tei",
            EMBEDDING_BASE_URL=service.url, EMBEDDING_MODEL="fake-embedder-for-queue-tests",
            EMBEDDING_MAX_DOCUMENT_CHARACTERS=str(LIMIT),
        )  # fmt: skip
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_BASE_URL = "tei", service.url
        settings.EMBEDDING_MODEL = "fake-embedder-for-queue-tests"
        SourceDocument.objects.bulk_create(SourceDocument(content=f"cluster document {n}") for n in range(5))
        bad = SourceDocument.objects.create(content=TOO_LONG)
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], env=env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_until(lambda: not QueueItem.objects.filter(status__in=QueueItem.LIVE_STATUSES).exists(), 90)
            assert dead_letters(bad) == 1
            # As migration 0005 makes it (a transactional test's flush emptied the table).
            schedule, _ = Schedule.objects.get_or_create(
                name="sidecar: reconcile embeddings",
                defaults={
                    "func": "queue_admin.tasks.reconcile",
                    "schedule_type": "I",
                    "minutes": 5,
                    "repeats": -1,
                },
            )
            for round_ in range(1, 4):
                Schedule.objects.filter(pk=schedule.pk).update(
                    minutes=1, next_run=timezone.now() - timedelta(minutes=1)
                )
                scheduler(broker=get_broker())
                wait_until(
                    lambda r=round_: Success.objects.filter(func="queue_admin.tasks.reconcile").count() >= r,
                    60,
                )
                time.sleep(1)  # time for a wrongly queued item to be claimed and failed again
            results = list(
                Success.objects.filter(func="queue_admin.tasks.reconcile").values_list("result", flat=True)
            )
            assert results == [0, 0, 0]
            assert dead_letters(bad) == 1
            assert QueueItem.objects.filter(document=bad).count() == 1
            assert QueueItem.objects.filter(status="completed").count() == 5
        finally:
            factory.get_provider.cache_clear()
            cluster.send_signal(signal.SIGTERM)
            try:
                output = cluster.communicate(timeout=30)[0]
            finally:
                if cluster.poll() is None:
                    os.killpg(cluster.pid, signal.SIGKILL)
        assert "reconciliation queued" not in output
