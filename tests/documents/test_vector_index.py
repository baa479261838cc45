"""The vector index policy: no HNSW index below VECTOR_INDEX_MIN_ROWS (exact search), one
partial index per model built CONCURRENTLY past it, a model change that waits for the new
model's index before search switches, and the schedule that starts builds.

Vectors are random (a fake embedder is enough: these tests are about the index and the queue,
not the model), written through the workers' own write path."""

import json

import numpy as np
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from documents import search, sidecar, vector_index
from documents.models import SourceDocument
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin import backfill, searching, vector_indexes
from queue_admin.worker import QueueWorker
from tests.fault_server import FakeEmbedder
from tests.helpers import database_url, run_sql

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config", "fresh_search_caches"),
]

MODEL = "fake-index-model"
DIMENSIONS = 384


@pytest.fixture(autouse=True)
def no_vector_indexes_left():
    """Indexes outlive a test's flush of the tables: drop every model's after each test."""
    yield
    for (name,) in run_sql(
        "SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", [vector_index.PREFIX + "%"]
    ):
        run_sql(f"DROP INDEX {name}")


def write_chunks(count: int, model: str = MODEL, seed: int = 1) -> list[SourceDocument]:
    """`count` documents of one chunk each with random unit vectors of `model`."""
    documents = SourceDocument.objects.bulk_create(
        SourceDocument(title=f"doc {n}", content=f"entry {n}") for n in range(count)
    )
    run_sql("DELETE FROM embedding_queue")  # written here, not by a worker
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with transaction.atomic():
        sidecar.replace_chunks(
            {
                document.id: ("hash", [sidecar.Chunk(0, document.content, "h", vector, 3)])
                for document, vector in zip(documents, vectors, strict=True)
            },
            model,
        )
    run_sql("ANALYZE document_embeddings")
    return documents


def nearest_plan(model: str = MODEL) -> str:
    """The plan of search's nearest-chunks query for `model`, as search runs it."""
    vector = np.random.default_rng(9).standard_normal(DIMENSIONS).astype(np.float32)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        search.search_documents(
            model, "entry", 10, "vector", search.Filters(), vector / np.linalg.norm(vector)
        )
        sql = next(query["sql"] for query in queries if "<=>" in query["sql"])
        return "\n".join(row for (row,) in run_sql("EXPLAIN " + sql))


def test_below_the_threshold_a_model_has_no_index_and_search_reads_its_chunks_exactly(settings):
    settings.VECTOR_INDEX_MIN_ROWS = 1_000
    write_chunks(200)
    state = vector_index.state(MODEL)
    assert state.state == "none" and state.chunks == 200
    assert "no HNSW index (200 chunks, under 1,000)" in state.describe()
    assert "hnsw" not in nearest_plan()
    assert vector_index.ready_to_serve(MODEL)  # small enough to need none
    assert not vector_index.wants_index(MODEL, queued=0, serving=True)


def test_a_build_makes_a_partial_index_per_model_concurrently_and_search_reads_through_it(settings):
    settings.VECTOR_INDEX_MIN_ROWS = 100
    write_chunks(300)
    write_chunks(50, model="other-model", seed=2)
    assert not vector_index.ready_to_serve(MODEL)  # 300 chunks, no index: not yet
    seconds = vector_index.build(MODEL)  # autocommit: CREATE INDEX CONCURRENTLY
    assert seconds > 0
    state = vector_index.state(MODEL)
    assert state.ready and state.size_bytes > 0 and "search uses it" in state.describe()
    definition = run_sql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [vector_index.index_name(MODEL)]
    )
    assert "USING hnsw (((embedding)::halfvec(384)) halfvec_cosine_ops)" in definition[0][0]
    assert "WHERE ((model)::text = 'fake-index-model'::text)" in definition[0][0]
    run_sql("SET enable_sort = off")  # 300 rows: the planner would rather sort them all
    try:
        assert vector_index.index_name(MODEL) in nearest_plan()
        assert vector_index.index_name(MODEL) not in nearest_plan("other-model")  # partial: its own only
    finally:
        run_sql("RESET enable_sort")
    assert vector_index.build(MODEL) == 0.0  # already there
    assert vector_index.state("other-model").state == "none"
    assert vector_index.drop(MODEL) and not vector_index.drop(MODEL)


def test_a_build_that_died_is_reported_and_dropped_before_the_next(settings):
    settings.VECTOR_INDEX_MIN_ROWS = 10
    write_chunks(40)
    vector_index.build(MODEL)
    # What a killed CREATE INDEX CONCURRENTLY leaves: the index, marked invalid.
    run_sql(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
        [vector_index.index_name(MODEL)],
    )
    state = vector_index.state(MODEL)
    assert state.state == "broken" and "failed or was stopped" in state.describe()
    assert not vector_index.has_usable_index(MODEL)
    assert vector_index.wants_index(MODEL, queued=0, serving=True)
    assert vector_index.build(MODEL) > 0
    assert vector_index.state(MODEL).ready


def test_two_builders_never_run_at_once(settings):
    settings.VECTOR_INDEX_MIN_ROWS = 10
    write_chunks(40)
    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute(
            "SELECT pg_advisory_lock(%s, %s)", [vector_index.LOCK_NAMESPACE, vector_index._lock_key(MODEL)]
        )
        with pytest.raises(vector_index.BuildBusy, match="being built by another process"):
            vector_index.build(MODEL)
        with pytest.raises(CommandError, match="being built by another process"):
            call_command("vector_index", "build", MODEL)
    assert vector_index.state(MODEL).state == "none"
    assert vector_index.build(MODEL) > 0


@pytest.mark.parametrize(
    "chunks, queued, serving, wanted",
    [
        (40, 0, True, True),  # past the threshold, nothing left to write
        (40, 30, True, True),  # serving search: at least half written, build now
        (40, 50, True, False),  # serving, most still to write: the build waits
        (40, 1, False, False),  # a model change still filling: one build at the end
        (40, 0, False, True),  # the model change has written everything
        (5, 0, True, False),  # under the threshold: exact search is enough
    ],
)  # fmt: skip
def test_the_policy_says_when_a_build_pays(settings, chunks, queued, serving, wanted):
    settings.VECTOR_INDEX_MIN_ROWS = 10
    write_chunks(chunks)
    assert vector_index.wants_index(MODEL, queued=queued, serving=serving) is wanted


def test_a_model_change_serves_the_previous_model_until_the_new_ones_index_is_ready(settings, capsys):
    settings.VECTOR_INDEX_MIN_ROWS = 5
    with FakeEmbedder(dimensions=DIMENSIONS) as service:
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "tei", "new-model"
        settings.EMBEDDING_BASE_URL = service.url
        settings.EMBEDDING_PREVIOUS_PROVIDER, settings.EMBEDDING_PREVIOUS_MODEL = "tei", "old-model"
        settings.EMBEDDING_PREVIOUS_BASE_URL = service.url
        SourceDocument.objects.bulk_create(SourceDocument(content=f"document {n}") for n in range(8))
        with QueueWorker(TEIEmbeddingProvider(service.url, "old-model", DIMENSIONS), name="old") as worker:
            worker.run()
        vector_index.build("old-model")
        backfill.enqueue(backfill.STALE, "new-model", priority="high")

        started = []
        assert vector_indexes.start_due_builds(start=started.append) == []  # new-model: nothing written yet
        with QueueWorker(TEIEmbeddingProvider(service.url, "new-model", DIMENSIONS), name="new") as worker:
            worker.run()
        searching._coverage.clear()
        # Every document covered, but 8 chunks past the threshold and no index: not yet.
        assert searching.search("document", k=3).model == "old-model"
        call_command("vector_index", "status")
        status = capsys.readouterr().out
        assert (
            "new-model: no HNSW index yet (8 chunks): one is due" in status
            and "old-model: HNSW index ready" in status
        )

        assert vector_indexes.start_due_builds(start=started.append) == ["new-model"]
        assert started == ["new-model"]
        call_command("vector_index", "build", "new-model")  # what the started process runs
        assert "Built the index of new-model" in capsys.readouterr().out
        assert searching.search("document", k=3).model == "new-model"
        assert vector_indexes.start_due_builds(start=started.append) == []


def test_the_schedule_starts_a_build_in_its_own_process(settings, monkeypatch):
    settings.VECTOR_INDEX_MIN_ROWS = 10
    write_chunks(20)
    monkeypatch.setenv("DATABASE_URL", database_url())  # the process inherits the environment
    process = vector_indexes.start_build(MODEL)
    assert process.wait(timeout=120) == 0
    assert vector_index.state(MODEL).ready


def test_vectors_too_wide_for_an_index_are_searched_exactly_and_say_so(settings):
    settings.VECTOR_INDEX_MIN_ROWS = 10
    write_chunks(20)
    settings.EMBEDDING_DIMENSIONS = 4_096  # as a 4,096-dimension model's column would be
    assert not vector_index.wants_index(MODEL, queued=0, serving=True)
    state = vector_index.state(MODEL)
    assert not state.due and "4096 dimensions, over the 4,000 an index can hold" in state.describe()
    with pytest.raises(CommandError, match="holds at most 4,000 dimensions"):
        call_command("vector_index", "build", MODEL)


def test_the_command_refuses_what_it_cannot_do():
    with pytest.raises(CommandError, match="needs the model's id"):
        call_command("vector_index", "build")
    with pytest.raises(CommandError, match="no chunks of model 'nope'"):
        call_command("vector_index", "build", "nope")


def test_readiness_names_each_models_index(settings, client):
    settings.VECTOR_INDEX_MIN_ROWS = 10
    from documents.providers.factory import get_provider

    write_chunks(20, model=get_provider().model_id)
    body = json.loads(client.get("/readyz").content)
    component = body["components"]["vector_index"]
    assert component["status"] == "warn" and "one is due" in component["detail"], component
    vector_index.build(get_provider().model_id)
    component = json.loads(client.get("/readyz").content)["components"]["vector_index"]
    assert component["status"] == "ok" and "HNSW index ready" in component["detail"]
