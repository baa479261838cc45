"""Backfills through the provider's Batch API (queue_admin/provider_batches.py), against a fake
OpenAI files-and-batches service on loopback (tests/batch_server.py) that answers with the
same deterministic vectors as the online fake, late, partly, or not at all, on cue."""

import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from documents.models import DocumentEmbedding, SourceDocument
from documents.providers import factory
from documents.providers.base import EmbeddingError
from documents.providers.openai_batches import BatchApi
from queue_admin import backfill, provider_batches, queue_sql
from queue_admin.models import ProviderBatch, QueueItem, WorkerMetric
from queue_admin.worker import QueueWorker
from tests.conftest import BATCH_API_MODEL as MODEL
from tests.fault_server import fake_vector

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


def documents(*texts):
    return [SourceDocument.objects.create(title=text[:20], content=text) for text in texts]


def item_of(doc) -> QueueItem:
    return QueueItem.objects.filter(document=doc).order_by("-created_at").first()


def start_and_send(**options) -> ProviderBatch:
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low", started_by="test", **options)
    provider_batches.advance_all()
    batch.refresh_from_db()
    return batch


def advance(batch: ProviderBatch) -> ProviderBatch:
    provider_batches.advance_all()
    batch.refresh_from_db()
    return batch


def assert_embedded(doc):
    (row,) = DocumentEmbedding.objects.filter(document=doc)
    assert row.model == MODEL
    assert np.allclose(np.asarray(row.embedding), fake_vector(doc.content, 384), atol=1e-6)


def test_a_backfill_through_the_batch_api_embeds_every_document_once(batch_api):
    docs = documents(*(f"Document number {n} about the Batch API." for n in range(5)))
    batch = start_and_send()

    assert batch.state == ProviderBatch.State.SUBMITTED and batch.provider_batch_id
    assert batch.documents == 5 and batch.texts_sent == 5
    lines = batch_api.input_lines(batch.provider_batch_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(str(item_of(d).id) for d in docs)
    assert all(line["url"] == "/v1/embeddings" and line["body"]["model"] == MODEL for line in lines)
    # Held for the provider's window: no worker claims them meanwhile.
    for doc in docs:
        item = item_of(doc)
        assert item.status == "processing" and item.worker_id == batch.worker_id
        assert item.lease_expires_at > timezone.now() + timedelta(hours=24)
    with QueueWorker(factory.get_provider(), name="test") as worker:
        assert worker.process_one_batch() is None

    assert advance(batch).provider_status == "in_progress"
    assert not DocumentEmbedding.objects.exists()
    batch = advance(batch)

    assert batch.state == ProviderBatch.State.DONE and batch.provider_status == "completed"
    assert (batch.completed, batch.failed, batch.returned) == (5, 0, 0)
    for doc in docs:
        assert item_of(doc).status == "completed"
        assert_embedded(doc)
    assert batch_api.count("POST", "/v1/files") == 1 and batch_api.count("POST", "/v1/batches") == 1
    assert advance(batch).state == ProviderBatch.State.DONE  # a finished batch is left alone
    embedded = WorkerMetric.objects.get(name="sidecar_documents", labels={"outcome": "embedded"})
    assert embedded.value == 5  # /metrics counts them as the workers' own


def test_failed_lines_are_retried_the_normal_way_and_edited_texts_go_back(batch_api):
    fine, broken, refused, edited = documents("fine text", "BROKEN text", "REFUSED text", "edited text")
    batch_api.line_status = {"BROKEN": 500, "REFUSED": 400}
    batch = start_and_send()
    SourceDocument.objects.filter(pk=edited.pk).update(content="edited again while at the provider")
    batch = advance(advance(batch))

    assert batch.state == ProviderBatch.State.DONE
    assert item_of(fine).status == "completed"
    assert_embedded(fine)
    retried = item_of(broken)
    assert (retried.status, retried.error_kind, retried.retry_count) == ("pending", "transient", 1)
    assert retried.next_attempt_at > timezone.now() and "scripted 500" in retried.error_message
    dead = item_of(refused)
    assert (dead.status, dead.error_kind) == ("failed", "permanent") and "HTTP 400" in dead.error_message
    back = item_of(edited)
    assert (back.status, back.retry_count, back.worker_id) == ("pending", 0, "")
    assert not DocumentEmbedding.objects.filter(document__in=[broken, refused, edited]).exists()
    assert (batch.completed, batch.failed, batch.returned) == (1, 1, 2)


def test_a_cancelled_batch_writes_what_it_finished_and_returns_the_rest(batch_api):
    docs = documents(*(f"cancel me {n}" for n in range(5)))
    batch_api.lines_finished = 2
    batch = start_and_send()

    batch = provider_batches.cancel(batch.id, cancelled_by="test")
    assert batch.state == ProviderBatch.State.CANCELLING
    batch = advance(batch)

    assert batch.state == ProviderBatch.State.DONE and batch.provider_status == "cancelled"
    statuses = sorted(item_of(doc).status for doc in docs)
    assert statuses == ["completed", "completed", "pending", "pending", "pending"]
    assert all(item_of(doc).retry_count == 0 for doc in docs)
    assert DocumentEmbedding.objects.count() == 2


def test_cancelled_before_it_was_sent_returns_everything_and_sends_nothing(batch_api):
    docs = documents("one", "two")
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    batch = provider_batches.cancel(batch.id, cancelled_by="test")

    assert batch.state == ProviderBatch.State.DONE and "before it was sent" in batch.error_message
    assert [item_of(doc).status for doc in docs] == ["pending", "pending"]
    assert batch_api.requests == []


def test_an_expired_batch_writes_what_it_answered_and_returns_the_rest(batch_api):
    docs = documents(*(f"expiring {n}" for n in range(5)))
    batch_api.outcome, batch_api.lines_finished = "expired", 3
    batch = advance(advance(start_and_send()))

    assert batch.state == ProviderBatch.State.DONE and "expired" in batch.error_message
    assert sorted(item_of(doc).status for doc in docs) == ["completed"] * 3 + ["pending"] * 2
    assert (batch.completed, batch.returned) == (3, 2)


def test_a_batch_the_provider_refuses_gives_every_document_back(batch_api):
    docs = documents("a", "b", "c")
    batch_api.outcome = "failed"
    batch = advance(advance(start_and_send()))

    assert batch.state == ProviderBatch.State.DONE and "model not found" in batch.error_message
    assert [item_of(doc).status for doc in docs] == ["pending"] * 3
    assert batch.returned == 3 and not DocumentEmbedding.objects.exists()


def test_a_provider_that_is_down_keeps_the_batch_and_it_is_sent_later(batch_api):
    docs = documents("patience", "is a virtue")
    batch_api.api_faults = [503, 503, 503]  # every attempt of the upload
    batch = start_and_send()

    assert batch.state == ProviderBatch.State.PREPARING and "503" in batch.error_message
    assert [item_of(doc).status for doc in docs] == ["processing"] * 2
    batch = advance(advance(advance(batch)))
    assert batch.state == ProviderBatch.State.DONE and batch.completed == 2


def send_but_die_before_recording_the_batch(batch: ProviderBatch, monkeypatch) -> None:
    """Send `batch` as a process killed between creating it at the provider and storing its id."""
    real_save = provider_batches._save

    def die_before_recording(target, *fields, **values):
        if "provider_batch_id" in values:
            raise KeyboardInterrupt("killed between creating the batch and recording its id")
        real_save(target, *fields, **values)

    monkeypatch.setattr(provider_batches, "_save", die_before_recording)
    with pytest.raises(KeyboardInterrupt):
        provider_batches.advance(batch.id)
    monkeypatch.setattr(provider_batches, "_save", real_save)


def test_a_restart_after_creating_the_batch_finds_it_instead_of_creating_another(batch_api, monkeypatch):
    docs = documents("created once", "and only once")
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    send_but_die_before_recording_the_batch(batch, monkeypatch)
    assert batch_api.count("POST", "/v1/batches") == 1

    batch = advance(advance(advance(batch)))
    assert batch_api.count("POST", "/v1/batches") == 1 and batch_api.count("POST", "/v1/files") == 1
    assert batch.state == ProviderBatch.State.DONE and batch.completed == 2
    assert all(item_of(doc).status == "completed" for doc in docs)


def test_cancelling_a_batch_created_but_not_recorded_cancels_it_at_the_provider(batch_api, monkeypatch):
    docs = documents("sent, then the process died", "so nobody knew the batch's id")
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    send_but_die_before_recording_the_batch(batch, monkeypatch)

    batch = provider_batches.cancel(batch.id, cancelled_by="test")
    (at_provider,) = batch_api.batches.values()
    assert batch.state == ProviderBatch.State.CANCELLING and batch.provider_batch_id == at_provider["id"]
    assert at_provider["status"] == "cancelling"
    batch = advance(batch)
    assert batch.state == ProviderBatch.State.DONE and batch.returned == 2
    assert [item_of(doc).status for doc in docs] == ["pending", "pending"]


def test_unchanged_documents_are_completed_without_being_sent(batch_api):
    (kept,) = documents("already embedded by this model")
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    provider_batches.advance_all()
    provider_batches.advance_all()
    provider_batches.advance_all()
    assert item_of(kept).status == "completed"
    sends_before = batch_api.count("POST", "/v1/files")

    (again,) = provider_batches.start(backfill.ALL, priority="low")
    assert again.documents == 1
    QueueItem.objects.filter(document=kept).update(metadata={})  # a plain item: skip what is right
    provider_batches.advance_all()
    again.refresh_from_db()
    assert again.state == ProviderBatch.State.DONE and again.completed == 1
    assert batch_api.count("POST", "/v1/files") == sends_before


def test_answers_of_the_wrong_size_are_permanent_errors_of_that_line(batch_api):
    api = BatchApi(factory.get_provider())
    line = {
        "custom_id": "x",
        "response": {"status_code": 200, "body": {"data": [{"index": 0, "embedding": [0.5] * 3}]}},
    }
    answer = api.read_answers(json.dumps(line).encode(), {"x": 1})["x"]
    assert (
        isinstance(answer, EmbeddingError) and answer.kind == "permanent" and "384 dimensions" in str(answer)
    )
    assert api.read_answers(b"not json\n", {"x": 1}) == {}


def test_the_batch_api_needs_the_openai_provider(settings):
    settings.EMBEDDING_PROVIDER = "local"
    factory.get_provider.cache_clear()
    try:
        with pytest.raises(provider_batches.NotAvailable, match="EMBEDDING_PROVIDER=openai"):
            provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    finally:
        factory.get_provider.cache_clear()


def test_the_backfill_command_sends_through_the_batch_api_and_the_status_command_follows(batch_api, capsys):
    documents("from the command line", "second")
    call_command("backfill", "--batch-api")
    out = capsys.readouterr().out
    assert "2 documents claimed into 1 provider batches" in out and "At the provider (batch_" in out

    call_command("provider_batches", "--advance")
    call_command("provider_batches", "--advance")
    out = capsys.readouterr().out
    assert "Done: 2 documents, provider batch_" in out and "2 completed, 0 failed, 0 returned" in out


def test_a_crash_while_writing_the_answers_is_picked_up_where_it_stopped(batch_api, monkeypatch):
    docs = documents(*(f"written in slices {n}" for n in range(5)))
    monkeypatch.setattr(provider_batches, "WRITE_SLICE", 2)
    batch = advance(start_and_send())  # in progress
    real_write = QueueWorker.write_plans
    slices = []

    def die_after_the_first_slice(worker, plans, report):
        if slices:
            raise KeyboardInterrupt("killed while writing")
        slices.append(len(plans))
        real_write(worker, plans, report)

    monkeypatch.setattr(QueueWorker, "write_plans", die_after_the_first_slice)
    with pytest.raises(KeyboardInterrupt):
        provider_batches.advance(batch.id)
    monkeypatch.setattr(QueueWorker, "write_plans", real_write)
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.SUBMITTED and batch.completed == 2
    assert sorted(item_of(doc).status for doc in docs) == ["completed"] * 2 + ["processing"] * 3

    batch = advance(batch)
    assert (batch.state, batch.completed, batch.returned) == (ProviderBatch.State.DONE, 5, 0)
    assert DocumentEmbedding.objects.count() == 5  # each once
    assert batch_api.count("POST", "/v1/batches") == 1


def test_documents_the_workers_took_back_while_it_waited_to_be_sent_are_not_sent(batch_api, sql):
    docs = documents("waited", "too long")
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    sql(
        "UPDATE embedding_queue SET lease_expires_at = now() - interval '1 minute' WHERE worker_id = %s",
        [batch.worker_id],
    )
    assert queue_sql.reclaim_expired_leases() == (2, 0)  # as any worker's sweep does
    batch = advance(batch)
    assert batch.state == ProviderBatch.State.DONE and batch.documents == 2 and batch.completed == 0
    assert batch.error_message == provider_batches.NOTHING_LEFT
    assert batch_api.requests == []
    assert [item_of(doc).status for doc in docs] == ["pending", "pending"]
