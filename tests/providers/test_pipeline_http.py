"""Provider faults end to end: a worker, a real HTTP provider and a fake embedding service on
loopback that fails on cue (tests/fault_server.py). Each fault must land the queue item in
the right state, with a message that says what came back, and write nothing."""

import os
import subprocess
import sys
import time

import pytest

from documents.models import DocumentEmbedding, SourceDocument
from documents.providers.http import HttpOptions
from documents.providers.openai import OpenAIEmbeddingProvider
from queue_admin import limits
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker
from tests import secrets
from tests.fault_server import FakeEmbedder, Fault
from tests.helpers import ROOT, database_url, set_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

FAST = HttpOptions(timeout_seconds=1.0, max_attempts=3, max_retry_wait_seconds=0.05)


@pytest.fixture
def service():
    with FakeEmbedder(dimensions=384) as server:
        yield server


def provider_for(service, **options):
    return OpenAIEmbeddingProvider(
        f"{service.url}/v1", secrets.PIPELINE_API_KEY, "fake-embedder-for-queue-tests", 384,
        http_options=options.pop("http_options", FAST), **options,
    )  # fmt: skip


def embed_one(service, *faults, content="one document"):
    doc = SourceDocument.objects.create(content=content)
    service.script(*faults)
    with QueueWorker(provider_for(service), name="test") as worker:
        worker.process_one_batch()
    return QueueItem.objects.get(document=doc)


def test_a_healthy_service_embeds_and_completes(service):
    item = embed_one(service)
    assert item.status == "completed"
    assert DocumentEmbedding.objects.filter(document=item.document).count() == 1


PERMANENT = {
    "wrong dimensions": (Fault(dimensions=12), "expected 384 dimensions, got 12"),
    "NaN": (Fault(nan=True), "not finite"),
    "too few vectors": (Fault(drop_vectors=1), "missing"),
    "400 bad request": (Fault(status=400), "400"),
}


@pytest.mark.parametrize("case", PERMANENT, ids=list(PERMANENT))
def test_permanent_faults_dead_letter_at_once_and_write_nothing(service, case):
    fault, says = PERMANENT[case]
    item = embed_one(service, fault)
    assert (item.status, item.error_kind) == ("failed", "permanent")
    assert says in item.error_message
    assert secrets.PIPELINE_API_KEY not in item.error_message
    assert not DocumentEmbedding.objects.exists()
    assert service.count() == 1  # not retried


@pytest.mark.parametrize(
    "case, faults",
    [
        ("500 three times", [Fault(status=500)] * 3),
        ("timeout three times", [Fault(sleep=2.5)] * 3),
        ("connection closed three times", [Fault(close_connection=True)] * 3),
        # Not JSON says nothing about the texts (2 % garbled answers in a fault storm).
        ("malformed JSON three times", [Fault(body='{"data": [', content_type="application/json")] * 3),
        (
            "HTML page with 200 three times",
            [Fault(body="<html><body>Login</body></html>", content_type="text/html")] * 3,
        ),
    ],
)
def test_transient_faults_are_retried_then_scheduled_for_later(service, case, faults):
    item = embed_one(service, *faults)
    assert (item.status, item.error_kind, item.retry_count) == ("pending", "transient", 1)
    assert service.count() == 3  # the client's own retries, then the queue's backoff
    assert not DocumentEmbedding.objects.exists()


def test_a_transient_fault_that_clears_is_invisible(service):
    item = embed_one(service, Fault(status=503))
    assert (item.status, item.retry_count) == ("completed", 0)
    assert service.count() == 2


def test_429_waits_for_retry_after_without_counting_an_attempt(service):
    item = embed_one(service, Fault(status=429, headers={"Retry-After": "20"}))
    assert (item.status, item.error_kind, item.retry_count) == ("rate_limited", "rate_limited", 0)
    assert 15_000 <= item.rate_limit_delay_ms <= 20_000
    assert service.count() == 1


def test_the_clients_retries_take_their_share_of_the_shared_quota(service):
    """A retry is a request the provider counts: with a quota of 2 a minute the first attempt
    and one retry go out, and the third attempt is not sent (its wait would outlast the half
    lease the worker may wait), so the item goes back for later instead."""
    set_config(api_quota_per_minute=2, lease_seconds=10, batch_size=1)
    SourceDocument.objects.create(content="one document")
    service.script(*[Fault(status=500)] * 3)
    with QueueWorker(provider_for(service), name="test") as worker:
        worker.process_one_batch()
    assert service.count() == 2
    item = QueueItem.objects.get()
    assert (item.status, item.error_kind, item.retry_count) == ("pending", "transient", 1)
    assert "not retried now" in item.error_message


def test_a_half_open_trial_is_one_request_not_one_per_attempt(service):
    """While the breaker is half-open the trial's failure is not retried by the client: the
    breaker exists so that a provider in trouble gets one request per recovery period."""
    set_config(circuit_breaker_failure_threshold=1, circuit_breaker_recovery_seconds=1, batch_size=1)
    SourceDocument.objects.create(content="one document")
    provider = provider_for(service)
    limits.record_failure(provider.model_id, "down", threshold=1)
    time.sleep(1.1)  # recovery passed: the next claim is the trial
    service.script(*[Fault(status=503)] * 3)
    with QueueWorker(provider, name="test") as worker:
        worker.process_one_batch()
    assert service.count() == 1
    assert limits.breaker_state(provider.model_id, recovery_seconds=1).state == "open"
    assert QueueItem.objects.get().status == "pending"


def test_refused_connections_open_the_breaker_and_recovery_closes_it(service, refused_url):
    set_config(circuit_breaker_failure_threshold=2, circuit_breaker_recovery_seconds=1, batch_size=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"doc {n}") for n in range(3))
    down = OpenAIEmbeddingProvider(
        f"{refused_url}/v1", None, "fake-embedder-for-queue-tests", 384, http_options=FAST
    )
    with QueueWorker(down, name="test") as worker:
        report = worker.run()
    assert report.retried == 2  # two batches failed, then the breaker stopped the claims
    assert "connect" in QueueItem.objects.filter(retry_count=1).first().error_message.lower()
    assert limits.breaker_state(down.model_id, recovery_seconds=1).state == "open"

    time.sleep(1.2)  # recovery: one trial request goes to the (now healthy) service
    QueueItem.objects.update(next_attempt_at=QueueItem.objects.first().created_at)
    with QueueWorker(provider_for(service), name="test") as worker:
        report = worker.run()
    assert report.completed == 3
    assert limits.breaker_state(down.model_id, recovery_seconds=1).state == "closed"


@pytest.mark.slow
def test_the_shared_request_quota_holds_across_two_processes_at_the_server(service):
    """Two process_queue processes against one service: the requests it receives stay within
    the shared quota: 6 in any minute (a sliding window), and the test lasts less than one."""
    set_config(api_quota_per_minute=6, batch_size=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"quota doc {n}") for n in range(40))
    env = dict(
        os.environ, DATABASE_URL=database_url(), DEBUG="1", EMBEDDING_PROVIDER="openai",
        EMBEDDING_BASE_URL=f"{service.url}/v1", EMBEDDING_MODEL="fake-embedder-for-queue-tests",
    )  # fmt: skip
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "process_queue", "--seconds", "6"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert time.monotonic() - started < 60
    assert service.count() == 6
    assert QueueItem.objects.filter(status="completed").count() == service.count()
