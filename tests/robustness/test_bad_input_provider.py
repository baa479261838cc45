"""Bad answers from an embedding service, end to end: a worker, a real HTTP
provider and the fake service on loopback (tests/fault_server.py). Each answer lands the queue
item in the right state with a message that says what came back, and changes no stored vector.

Kinds already covered end to end in tests/providers/test_pipeline_http.py (wrong dimensions, NaN,
malformed JSON, an HTML page with 200, too few vectors, 400, 5xx, timeouts, 429) and at the
client in tests/providers/test_http_providers.py are not repeated; docs/reliability-inputs.md indexes them.
"""

import json
import time
import tracemalloc

import pytest

from documents.models import DocumentEmbedding, SourceDocument
from documents.providers.http import HttpOptions
from documents.providers.openai import OpenAIEmbeddingProvider
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker
from tests import state
from tests.fault_server import FakeEmbedder, Fault

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

MiB = 1024 * 1024
FAST = HttpOptions(timeout_seconds=1.0, max_attempts=3, max_retry_wait_seconds=0.05)
MODEL = "fake-embedder-for-queue-tests"


@pytest.fixture
def service():
    with FakeEmbedder(dimensions=384) as server:
        yield server


def openai(service, options=FAST):
    return OpenAIEmbeddingProvider(f"{service.url}/v1", None, MODEL, 384, http_options=options)


def tei(service, options=FAST):
    return TEIEmbeddingProvider(service.url, MODEL, 384, http_options=options)


def vectors(count, dims=384, value=0.05):
    return [[value] * dims for _ in range(count)]


def openai_body(rows, **extra):
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    return json.dumps({"object": "list", "data": data, "model": MODEL, **extra})


@pytest.fixture
def earlier_embedding(service):
    """A document embedded once from an earlier text, then edited: the bad answer arrives for
    the edit, and the earlier embedding must survive it untouched."""
    doc = SourceDocument.objects.create(content="the earlier text")
    with QueueWorker(openai(service), name="setup") as worker:
        worker.process_one_batch()
    doc.content = "the edited text"
    doc.save()
    service.reset()
    return doc


def embed_edit(service, provider, doc, *faults):
    service.script(*faults)
    before = state.fingerprint(exclude=state.VISIT_TABLES | {"embedding_queue", "embedding_queue_workers"})
    before = {
        table: value
        for table, value in before.items()
        if not table.startswith(("django_q", "embedding_worker", "embedding_provider"))
    }
    with QueueWorker(provider, name="bad-answers") as worker:
        worker.process_one_batch()
    after = state.fingerprint(exclude=state.VISIT_TABLES | {"embedding_queue", "embedding_queue_workers"})
    after = {table: after[table] for table in before}
    assert state.changed_tables(before, after) == []  # vectors and documents untouched
    return QueueItem.objects.filter(document=doc).latest("created_at")


PERMANENT = {
    "Infinity in a vector (OpenAI)": ("openai", Fault(body=openai_body([[float("inf")] + [0.1] * 383])), "1 of 1 vectors are not finite (0 NaN and 1 Inf"),
    "Infinity in a vector (TEI)": ("tei", Fault(body=json.dumps([[-float("inf")] + [0.1] * 383])), "not finite (0 NaN and 1 Inf"),
    "an empty list of vectors (OpenAI)": ("openai", Fault(body=openai_body([])), "expected 1 vectors, got 0"),
    "an empty list of vectors (TEI)": ("tei", Fault(body="[]"), "expected 1 vectors, got 0"),
    "an empty vector": ("openai", Fault(body=openai_body([[]])), "expected 384 dimensions, got 0"),
    "more vectors than texts": ("openai", Fault(body=openai_body(vectors(2))), "expected 1 vectors, got 2"),
    "a null embedding": ("openai", Fault(body=openai_body([None])), "is null, not a list of numbers"),
    "base64 of one number": ("openai", Fault(body=openai_body(["AAAAAA=="])), "expected 384 dimensions, got 1"),
    "base64 of bytes that are no float32": ("openai", Fault(body=openai_body(["AAAA"])), "holds 3 bytes, not whole float32 numbers"),
    "text that is not base64": ("openai", Fault(body=openai_body(["not base64!"])), "is not valid base64"),
    "numbers as text": ("openai", Fault(body=openai_body([["0.1"] * 384])), "holds a string, not only numbers"),
    "an error object with 200": ("openai", Fault(body='{"error": {"message": "quota exhausted"}}'), "quota exhausted"),
    "a 2 GB body, announced": ("openai", Fault(huge_bytes=2 * 1024**3, declare_length=True), "(Content-Length 2048 MiB); refused unread"),
    "an HTML login page from a proxy, 401": ("openai", Fault(status=401, body="<html><body>Please sign in</body></html>", content_type="text/html"), "HTTP 401"),
}  # fmt: skip


@pytest.mark.parametrize("case", PERMANENT, ids=list(PERMANENT))
def test_bad_answers_dead_letter_at_once_with_what_came_back(service, earlier_embedding, case):
    which, fault, says = PERMANENT[case]
    provider = openai(service) if which == "openai" else tei(service)
    started = time.monotonic()
    item = embed_edit(service, provider, earlier_embedding, fault)
    assert (item.status, item.error_kind) == ("failed", "permanent"), item.error_message
    assert says in item.error_message, item.error_message
    assert service.count() == 1  # not retried
    assert time.monotonic() - started < 5
    assert DocumentEmbedding.objects.filter(document=earlier_embedding).count() == 1


def test_an_endless_body_is_cut_at_the_cap_without_being_held(service, earlier_embedding):
    """A 2 GB answer without Content-Length: read as a stream and dropped at the size cap
    (here 1 MiB, raised to fit a full batch of vectors: 2 MiB; 64 MiB by default), so the
    worker never holds more than the cap."""
    provider = openai(service, HttpOptions(timeout_seconds=5, max_attempts=1, max_response_bytes=MiB))
    tracemalloc.start()
    try:
        item = embed_edit(service, provider, earlier_embedding, Fault(huge_bytes=2 * 1024**3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (item.status, item.error_kind) == ("failed", "permanent")
    assert "response larger than 2 MiB; stopped reading" in item.error_message
    assert peak < 16 * MiB


TRANSIENT = {
    "a slow-loris answer, one byte per 0.2 s": Fault(trickle_interval=0.2),
    "an HTML error page from a proxy, 502": Fault(status=502, body="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"),
    "the connection dropped": Fault(close_connection=True),
    # A 200 whose body is not JSON is a garbled or cut answer, not a verdict on the text: a
    # later try may fix it (the fault storm found one such answer dead-lettering a healthy
    # document). JSON of the wrong shape stays permanent (above).
    "plain text with 200": Fault(body="OK", content_type="text/plain"),
}  # fmt: skip


@pytest.mark.parametrize("case", TRANSIENT, ids=list(TRANSIENT))
def test_answers_a_later_try_may_fix_are_retried_later_and_write_nothing(service, earlier_embedding, case):
    item = embed_edit(service, openai(service), earlier_embedding, *[TRANSIENT[case]] * 3)
    assert (item.status, item.error_kind, item.retry_count) == ("pending", "transient", 1), item.error_message
    assert service.count() == 3  # the client's three attempts; then the queue's back-off
    if "slow-loris" in case:
        assert "deadline exceeded" in item.error_message or "timed out" in item.error_message
    if "502" in case:
        assert "502 Bad Gateway" in item.error_message
    if "plain text" in case:
        assert "text/plain" in item.error_message
