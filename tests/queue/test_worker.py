"""The worker loop end to end on the real database, with a fake embedder: these tests are
about the queue (claim, skip, chunk, write, complete, fail), not the model."""

import threading
import time
import uuid

import pytest
from django.db import connection

from documents.models import DocumentEmbedding, SourceDocument
from documents.providers.base import EmbeddingError
from queue_admin.models import QueueItem, Worker
from queue_admin.worker import QueueWorker, md5_hex
from tests.fakes import FakeEmbedderForQueueTests
from tests.fault_server import fake_vector
from tests.helpers import set_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


def run_worker(embedder, **kwargs):
    with QueueWorker(embedder, name="test") as worker:
        return worker.run(**kwargs)


def statuses():
    return dict(QueueItem.objects.values_list("document_id", "status"))


def test_every_document_is_embedded_once_and_completed():
    docs = SourceDocument.objects.bulk_create(
        SourceDocument(content=f"document number {n}") for n in range(70)
    )
    embedder = FakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert report.completed == 70 and report.claimed == 70
    assert sorted(embedder.texts_sent) == sorted(d.content for d in docs)
    assert set(statuses().values()) == {"completed"}
    for doc in docs:
        (row,) = DocumentEmbedding.objects.filter(document=doc)
        assert row.source_text_hash == row.document_text_hash == md5_hex(doc.content)
        assert row.model == embedder.model_id and row.chunk_index == 0
        assert list(row.embedding) == pytest.approx(list(fake_vector(doc.content, 384)), abs=1e-6)


def test_text_the_sidecar_already_holds_is_skipped_without_a_model_call():
    doc = SourceDocument.objects.create(content="already embedded")
    run_worker(FakeEmbedderForQueueTests())
    QueueItem.objects.filter(document=doc).delete()
    QueueItem.objects.create(document=doc)  # e.g. a forced re-queue
    embedder = FakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert (report.completed, report.skipped, embedder.calls) == (1, 1, 0)


def test_blank_document_is_completed_with_no_chunks_and_no_call():
    doc = SourceDocument.objects.create(content="   ")
    QueueItem.objects.create(document=doc)
    embedder = FakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert (report.completed, report.skipped, embedder.calls) == (1, 1, 0)
    assert not DocumentEmbedding.objects.filter(document=doc).exists()


def test_long_document_is_chunked_and_unchanged_chunks_are_reused_after_an_edit():
    words = [f"word{n}" for n in range(1000)]
    doc = SourceDocument.objects.create(content=" ".join(words))
    first = FakeEmbedderForQueueTests()
    run_worker(first)
    chunk_count = DocumentEmbedding.objects.filter(document=doc).count()
    assert chunk_count > 3 and first.calls >= 1

    doc.content = " ".join(words[:-5] + ["changed", "tail"])
    doc.save()
    second = FakeEmbedderForQueueTests()
    run_worker(second)
    assert 1 <= len(second.texts_sent) < chunk_count  # only the chunks whose text changed
    rows = list(DocumentEmbedding.objects.filter(document=doc).order_by("chunk_index"))
    assert [r.chunk_index for r in rows] == list(range(len(rows)))
    assert {r.document_text_hash for r in rows} == {md5_hex(doc.content)}
    assert rows[-1].source_text.endswith("changed tail")


def test_shorter_edit_drops_the_chunks_past_the_new_end():
    doc = SourceDocument.objects.create(content=" ".join(f"w{n}" for n in range(1000)))
    run_worker(FakeEmbedderForQueueTests())
    doc.content = "now it is short"
    doc.save()
    run_worker(FakeEmbedderForQueueTests())
    assert list(DocumentEmbedding.objects.filter(document=doc).values_list("chunk_index", "source_text")) == [
        (0, "now it is short")
    ]


def test_an_edit_during_an_in_flight_batch_ends_with_the_newer_texts_embedding():
    doc = SourceDocument.objects.create(content="the old text")

    class EditWhileEmbedding(FakeEmbedderForQueueTests):
        def embed(self, texts, may_retry=None):
            if "the old text" in texts:
                # another writer, on its own connection, edits the document mid-batch
                editor = threading.Thread(target=self._edit)
                editor.start()
                editor.join()
            return super().embed(texts)

        @staticmethod
        def _edit():
            SourceDocument.objects.filter(id=doc.id).update(content="the new text")
            connection.close()

    embedder = EditWhileEmbedding()
    report = run_worker(embedder)
    assert report.requeued == 1
    (row,) = DocumentEmbedding.objects.filter(document=doc)
    assert (row.source_text, row.document_text_hash) == ("the new text", md5_hex("the new text"))
    assert embedder.texts_sent == ["the old text", "the new text"]
    assert set(statuses().values()) == {"completed"}


def test_a_permanently_bad_document_fails_alone_not_its_batch():
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"fine document {n}") for n in range(10))
    poison = SourceDocument.objects.create(content="POISON document")
    embedder = FakeEmbedderForQueueTests(
        fail_on={"POISON": EmbeddingError("expected 384 dimensions, got 12", kind="permanent")}
    )
    report = run_worker(embedder)
    assert (report.completed, report.failed) == (10, 1)
    failed = QueueItem.objects.get(document=poison)
    assert (failed.status, failed.error_kind) == ("failed", "permanent")
    assert "expected 384 dimensions, got 12" in failed.error_message
    assert DocumentEmbedding.objects.filter(document__in=docs).count() == 10


def test_transient_error_schedules_a_retry_with_backoff():
    doc = SourceDocument.objects.create(content="flaky provider")
    embedder = FakeEmbedderForQueueTests(
        fail_on={"flaky": EmbeddingError("503 Service Unavailable", kind="transient")}
    )
    report = run_worker(embedder)
    assert report.retried == 1
    item = QueueItem.objects.get(document=doc)
    assert (item.status, item.retry_count, item.error_kind) == ("pending", 1, "transient")
    assert "503" in item.error_message
    # not due yet: a second run finds nothing to claim
    assert run_worker(FakeEmbedderForQueueTests()).claimed == 0


def test_rate_limited_waits_for_retry_after():
    doc = SourceDocument.objects.create(content="too many requests")
    error = EmbeddingError("429 Too Many Requests", kind="rate_limited", retry_after=30)
    run_worker(FakeEmbedderForQueueTests(fail_on={"too many": error}))
    item = QueueItem.objects.get(document=doc)
    assert (item.status, item.retry_count) == ("rate_limited", 0)
    assert 25_000 <= item.rate_limit_delay_ms <= 30_000


def test_paused_queue_claims_nothing():
    SourceDocument.objects.create(content="waiting")
    set_config(queue_enabled=False)
    report = run_worker(FakeEmbedderForQueueTests())
    assert report.claimed == 0
    assert set(statuses().values()) == {"pending"}


def test_batch_size_one_is_marathon_mode():
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(3))
    set_config(batch_size=1)
    embedder = FakeEmbedderForQueueTests()
    report = run_worker(embedder, max_batches=2)
    assert report.completed == 2 and embedder.calls == 2


def test_worker_registers_counts_and_finishes():
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(5))
    run_worker(FakeEmbedderForQueueTests())
    (worker,) = Worker.objects.all()
    assert (worker.status, worker.tasks_processed, worker.error_count) == ("finished", 5, 0)
    assert worker.worker_id.count(":") >= 3 and worker.pid > 0


def test_deleted_document_mid_batch_is_dropped_quietly():
    doc = SourceDocument.objects.create(content="soon deleted")

    class DeleteWhileEmbedding(FakeEmbedderForQueueTests):
        def embed(self, texts, may_retry=None):
            remover = threading.Thread(
                target=lambda: (SourceDocument.objects.filter(id=doc.id).delete(), connection.close())
            )
            remover.start()
            remover.join()
            return super().embed(texts)

    report = run_worker(DeleteWhileEmbedding())
    assert report.completed == 0
    assert not DocumentEmbedding.objects.exists() and not QueueItem.objects.exists()
    assert uuid.UUID(str(doc.id))


class RemoteFakeEmbedder(FakeEmbedderForQueueTests):
    """Treated like an HTTP service: shared rate limits and the circuit breaker apply."""

    is_remote = True
    model_id = "remote-fake-embedder-for-queue-tests@1"


def test_transient_failures_open_the_breaker_and_the_queue_waits():
    from queue_admin import limits

    set_config(circuit_breaker_failure_threshold=2, batch_size=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"down {n}") for n in range(4))
    embedder = RemoteFakeEmbedder(fail_on={"down": EmbeddingError("connection refused", kind="transient")})
    report = run_worker(embedder)
    assert embedder.calls == 2  # the third batch was never claimed: the breaker is open
    assert report.retried == 2
    state = limits.breaker_state(embedder.model_id, recovery_seconds=60)
    assert state.state == "open"
    assert QueueItem.objects.filter(status="pending", retry_count=0).count() == 2


def test_shared_request_quota_holds_and_a_stop_gives_unsent_work_back():
    set_config(api_quota_per_minute=2, batch_size=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"quota {n}") for n in range(3))
    embedder = RemoteFakeEmbedder()
    with QueueWorker(embedder, name="test") as worker:
        # Two requests fit the quota at once; the third would wait a minute for the window.
        # Asking the worker to stop meanwhile gives that item back untouched.
        threading.Timer(2.0, worker.stop_requested.set).start()
        report = worker.run()
    assert embedder.calls == 2
    assert (report.completed, report.requeued) == (2, 1)
    (waiting,) = QueueItem.objects.exclude(status="completed")
    assert (waiting.status, waiting.retry_count, waiting.worker_id) == ("pending", 0, "")


def test_an_unexpected_error_gives_the_batch_back_and_the_worker_carries_on():
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(3))

    class BreaksOnce(FakeEmbedderForQueueTests):
        broken = True

        def embed(self, texts, may_retry=None):
            if self.broken:
                self.broken = False
                raise RuntimeError("model file is corrupt")
            return super().embed(texts)

    embedder = BreaksOnce()
    with QueueWorker(embedder, name="test") as worker:
        report = worker.run()
    assert report.completed == 3
    assert set(statuses().values()) == {"completed"}
    assert QueueItem.objects.filter(retry_count=0).count() == 3  # given back, not counted


@pytest.mark.slow
def test_a_10_mb_document_is_chunked_and_embedded():
    content = " ".join(f"word{n % 5000}" for n in range(1_250_000))[: 10 * 1024 * 1024]
    doc = SourceDocument.objects.create(title="ten megabytes", content=content)
    embedder = FakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert report.completed == 1
    rows = DocumentEmbedding.objects.filter(document=doc)
    assert rows.count() == len(embedder.texts_sent) > 1000
    assert max(len(text.split()) for text in embedder.texts_sent) <= 256  # each chunk fits the model
    assert set(rows.values_list("document_text_hash", flat=True)) == {md5_hex(content)}


def test_while_the_breaker_is_open_the_fallback_serves_the_batch():
    from documents.providers.fallback import FallbackEmbeddingProvider
    from queue_admin import limits

    primary, fallback = RemoteFakeEmbedder(), RemoteFakeEmbedder()
    for _ in range(5):
        limits.record_failure(primary.model_id, "connection refused", threshold=5)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"fallback doc {n}") for n in range(3))
    report = run_worker(FallbackEmbeddingProvider(primary, fallback))
    assert (report.completed, primary.calls, fallback.calls) == (3, 0, 1)
    assert limits.breaker_state(primary.model_id, recovery_seconds=60).state == "open"  # untouched
    assert DocumentEmbedding.objects.filter(model=primary.model_id).count() == 3


def test_batches_leave_no_new_classes_behind():
    """psycopg keeps every dumper class it has ever seen, process-wide: teaching each batch's
    cursor the vector type must reuse one class, not make new ones (a worker grew by ~6 KB
    a batch when it did: `python -m bench memory`)."""
    import gc

    from pgvector.psycopg.vector import VectorBinaryDumper, VectorDumper

    set_config(batch_size=1)
    SourceDocument.objects.create(content="the first batch makes what is made once")
    run_worker(FakeEmbedderForQueueTests())

    def dumper_classes():
        gc.collect()
        return len(VectorDumper.__subclasses__()) + len(VectorBinaryDumper.__subclasses__())

    before = dumper_classes()
    SourceDocument.objects.bulk_create(SourceDocument(content=f"one batch each {n}") for n in range(5))
    assert run_worker(FakeEmbedderForQueueTests()).completed == 5
    assert DocumentEmbedding.objects.count() == 6
    assert dumper_classes() == before


def test_each_batch_is_written_while_the_next_one_is_embedded(monkeypatch):
    """run() hands each batch's write to a writer thread: here the first batch's write waits
    until the second batch is at the model, which a loop that wrote a batch before claiming
    the next could never reach (the wait would time out)."""
    from documents import sidecar

    set_config(batch_size=4)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(8))
    second_batch_at_the_model = threading.Event()
    first_write = []
    real_replace_chunks = sidecar.replace_chunks

    def replace_chunks_once_the_next_batch_embeds(documents, model):
        if not first_write:
            first_write.append(
                (
                    threading.current_thread() is not threading.main_thread(),
                    second_batch_at_the_model.wait(10),
                )
            )
        return real_replace_chunks(documents, model)

    class SaysWhenTheSecondBatchArrives(FakeEmbedderForQueueTests):
        def embed(self, texts, may_retry=None):
            if self.calls >= 1:
                second_batch_at_the_model.set()
            return super().embed(texts)

    monkeypatch.setattr(sidecar, "replace_chunks", replace_chunks_once_the_next_batch_embeds)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        (sessions_before,) = cursor.fetchone()
        report = run_worker(SaysWhenTheSecondBatchArrives())
        deadline = time.monotonic() + 5  # a backend leaves pg_stat_activity just after its client
        while True:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            (sessions_after,) = cursor.fetchone()
            if sessions_after <= sessions_before or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert first_write == [(True, True)]  # on the writer thread, overlapping the next batch
    # run() returns with every write done and counted, and the writer's session closed.
    assert (report.claimed, report.completed) == (8, 8)
    assert set(statuses().values()) == {"completed"} and DocumentEmbedding.objects.count() == 8
    assert sessions_after == sessions_before


def test_a_write_that_fails_gives_its_batch_back_and_the_run_goes_on(monkeypatch):
    from documents import sidecar

    set_config(batch_size=4)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(8))
    real_replace_chunks = sidecar.replace_chunks
    failed = []

    def fails_once(documents, model):
        if not failed:
            failed.extend(documents)
            raise RuntimeError("could not extend file: No space left on device")
        return real_replace_chunks(documents, model)

    monkeypatch.setattr(sidecar, "replace_chunks", fails_once)
    embedder = FakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert len(failed) == 4
    assert report.completed == 8 and set(statuses().values()) == {"completed"}
    assert (
        QueueItem.objects.filter(document_id__in=failed, retry_count=0).count() == 4
    )  # given back, not counted
    assert len(embedder.texts_sent) == 12  # the failed batch was embedded again, nothing else
    assert DocumentEmbedding.objects.count() == 8
