"""Backfill, reconciliation and cleanup: set-based selection of missing and stale embeddings."""

import time
from datetime import timedelta

import pytest
from django.db.models.functions import Now

from documents.models import SourceDocument
from queue_admin import backfill
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker
from tests.fakes import FakeEmbedderForQueueTests

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

MODEL = FakeEmbedderForQueueTests.model_id


def embed_everything(embedder=None):
    with QueueWorker(embedder or FakeEmbedderForQueueTests(), name="test") as worker:
        return worker.run()


@pytest.fixture
def corpus():
    """Ten documents, all embedded; then two bypass the triggers with a new text (as logical
    replication would write them) and three are written with the triggers off, never queued."""
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"document {n}") for n in range(10))
    embed_everything()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE source_documents DISABLE TRIGGER USER")
        try:
            cursor.execute(
                "UPDATE source_documents SET content = content || ' edited' WHERE id = ANY(%s)",
                [[d.id for d in docs[:2]]],
            )
            cursor.execute("INSERT INTO source_documents (content) VALUES ('new a'), ('new b'), ('new c')")
        finally:
            cursor.execute("ALTER TABLE source_documents ENABLE TRIGGER USER")
    return docs


def test_counts_missing_stale_and_all(corpus):
    assert backfill.count(backfill.MISSING, MODEL).documents == 3
    assert backfill.count(backfill.STALE, MODEL).documents == 2
    assert backfill.count(backfill.MISSING_OR_STALE, MODEL).documents == 5
    assert backfill.count(backfill.ALL, MODEL).documents == 13
    assert backfill.count(backfill.MISSING_OR_STALE, MODEL, limit=4).documents == 4
    assert backfill.count(backfill.MISSING, MODEL).estimated_tokens > 0


def test_a_model_change_makes_every_embedded_document_stale(corpus):
    assert backfill.count(backfill.STALE, "another-model@2").documents == 10
    assert backfill.count(backfill.MISSING, "another-model@2").documents == 3


def test_backfill_queues_then_the_worker_makes_everything_current(corpus):
    assert backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="low") == 5
    assert set(QueueItem.objects.filter(status="pending").values_list("priority", flat=True)) == {"low"}
    embedder = FakeEmbedderForQueueTests()
    embed_everything(embedder)
    assert len(embedder.texts_sent) == 5
    assert backfill.count(backfill.MISSING_OR_STALE, MODEL).documents == 0


def test_backfill_all_forces_a_re_embed_of_unchanged_documents(corpus):
    embed_everything()  # nothing live
    backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="low")
    embed_everything()
    assert backfill.enqueue(backfill.ALL, MODEL, priority="high") == 13
    embedder = FakeEmbedderForQueueTests()
    report = embed_everything(embedder)
    assert (report.completed, report.skipped, len(embedder.texts_sent)) == (13, 0, 13)


def test_reconcile_queues_only_what_has_no_live_item(corpus):
    assert backfill.reconcile(MODEL) == 5
    assert backfill.reconcile(MODEL) == 0  # their items are live now
    assert QueueItem.objects.filter(status="pending", priority="low").count() == 5


def test_delete_old_completed_in_batches():
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(7))
    embed_everything()
    QueueItem.objects.update(processing_completed_at=Now() - timedelta(hours=30))
    SourceDocument.objects.create(content="recent")
    embed_everything()
    assert backfill.delete_old_completed(24, batch_size=3) == 7
    assert QueueItem.objects.count() == 1


@pytest.fixture
def commands_use_the_fake_model(settings):
    """Make `get_provider()` in this process name the fake embedder's model, as the commands
    select documents by the configured model (a TEI provider that is never called)."""
    from documents.providers import factory

    settings.EMBEDDING_PROVIDER = "tei"
    settings.EMBEDDING_BASE_URL = "http://127.0.0.1:9"
    settings.EMBEDDING_MODEL = MODEL
    factory.get_provider.cache_clear()
    assert factory.get_provider().model_id == MODEL
    yield
    factory.get_provider.cache_clear()


def test_backfill_command_dry_run_changes_nothing(corpus, capsys, settings, commands_use_the_fake_model):
    from django.core.management import call_command

    settings.EMBEDDING_PRICE_PER_MILLION_TOKENS = 0.02
    call_command("backfill", "--dry-run")
    out = capsys.readouterr().out
    assert "5 documents to embed" in out and "Estimated cost" in out and "nothing was queued" in out
    assert not QueueItem.objects.filter(status="pending").exists()


def test_backfill_stale_after_a_model_change_re_embeds_with_the_new_model(corpus):
    from documents.models import DocumentEmbedding

    class NewModel(FakeEmbedderForQueueTests):
        model_id = "fake-embedder-for-queue-tests@2"

    assert backfill.enqueue(backfill.STALE, NewModel.model_id, priority="low") == 10
    embedder = NewModel()
    embed_everything(embedder)
    assert len(embedder.texts_sent) == 10
    assert DocumentEmbedding.objects.filter(model=NewModel.model_id).count() == 10
    # the old model's rows stay until removed; search chooses by model
    assert DocumentEmbedding.objects.filter(model=MODEL).count() == 10


def test_backfill_wait_shows_progress_until_the_backlog_drains(corpus, capsys, commands_use_the_fake_model):
    import threading

    from django.core.management import call_command
    from django.db import connection

    def drain_soon():
        time.sleep(1.5)
        embed_everything()
        connection.close()

    worker = threading.Thread(target=drain_soon)
    worker.start()
    call_command("backfill", "--wait")
    worker.join()
    captured = capsys.readouterr()
    assert "Queued 5 documents" in captured.out and "Backlog drained." in captured.out
    assert "5/5" in captured.err  # tqdm's bar reached the total
    assert backfill.live_items() == 0


def test_backfill_in_parallel_sessions_queues_each_document_once(corpus):
    expected = set(
        SourceDocument.objects.exclude(id__in=[d.id for d in corpus[2:]]).values_list("id", flat=True)
    )
    assert backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="high", sessions=3) == 5
    live = QueueItem.objects.filter(status="pending")
    assert set(live.values_list("document_id", flat=True)) == expected
    assert live.count() == 5 and set(live.values_list("priority", flat=True)) == {"high"}
    # Running it again coalesces into the live items: nothing queued twice.
    backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="high", sessions=3)
    assert QueueItem.objects.filter(status="pending").count() == 5


def test_backfill_parts_cover_every_document_exactly_once():
    """The parts split on a byte of the id: with many documents and several sessions, every
    document lands in exactly one part (ALL queues each again, forced)."""
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(300))
    QueueItem.objects.all().delete()
    assert backfill.enqueue(backfill.ALL, MODEL, priority="low", sessions=4) == 300
    assert QueueItem.objects.count() == 300
    assert QueueItem.objects.values("document_id").distinct().count() == 300


def test_backfill_part_failure_says_what_was_queued_and_what_to_do(corpus, monkeypatch):
    real_part = backfill._enqueue_part

    def second_part_fails(where, kind, model, priority, limit, part=None):
        if part and part[0] == 1:
            raise RuntimeError("connection lost")
        return real_part(where, kind, model, priority, limit, part)

    monkeypatch.setattr(backfill, "_enqueue_part", second_part_fails)
    with pytest.raises(backfill.PartlyQueued) as raised:
        backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="low", sessions=2)
    queued = QueueItem.objects.filter(status="pending").count()
    assert raised.value.queued == queued < 5
    assert "1 of 2 parts failed (connection lost)" in str(raised.value)
    assert "Running the backfill again queues the rest" in str(raised.value)
    monkeypatch.setattr(backfill, "_enqueue_part", real_part)
    backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="low", sessions=2)
    assert QueueItem.objects.filter(status="pending").count() == 5


@pytest.mark.parametrize("value", ["0", "65"])
def test_backfill_command_refuses_a_parallel_count_out_of_range(value, commands_use_the_fake_model):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--parallel must be between 1 and 64"):
        call_command("backfill", "--parallel", value)
    assert not QueueItem.objects.exists()


def test_backfill_leaves_out_failed_and_cancelled_documents_and_says_how_many(
    corpus, capsys, commands_use_the_fake_model
):
    from django.core.management import call_command

    from queue_admin import operations

    # Two of the five to embed are held for a person: one dead-lettered, one cancelled.
    dead, cancelled = SourceDocument.objects.filter(content__in=["new a", "new b"]).order_by("content")
    backfill.enqueue(backfill.MISSING_OR_STALE, MODEL, priority="low")
    QueueItem.objects.filter(document=dead).update(
        status="failed", error_kind="permanent", error_message="boom"
    )
    operations.cancel(QueueItem.objects.filter(document=cancelled).values_list("id", flat=True))
    QueueItem.objects.filter(status="pending").delete()  # the other three: as before the backfill
    selection = backfill.count(backfill.MISSING_OR_STALE, MODEL)
    assert (selection.documents, selection.held_back) == (3, 2)
    assert backfill.count(backfill.MISSING_OR_STALE, MODEL, include_held=True).documents == 5
    assert backfill.count(backfill.ALL, MODEL).held_back == 2

    call_command("backfill", "--dry-run")
    out = capsys.readouterr().out
    assert "3 documents to embed" in out
    assert (
        "Left out: 2 documents whose last attempt failed or was cancelled" in out
        and "--include-failed" in out
    )

    call_command("backfill")
    assert "Queued 3 documents" in capsys.readouterr().out
    assert QueueItem.objects.filter(document__in=[dead, cancelled], status="pending").count() == 0

    call_command("backfill", "--include-failed", "--dry-run")
    out = capsys.readouterr().out
    assert "5 documents to embed" in out and "Left out" not in out  # the three live ones coalesce
    call_command("backfill", "--include-failed")
    assert "Queued 2 documents" in capsys.readouterr().out
    assert QueueItem.objects.filter(document__in=[dead, cancelled], status="pending").count() == 2
