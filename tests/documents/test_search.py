"""Semantic search: real vectors from the local model, and the one-model-at-a-time rule."""

import pytest

from documents import search
from documents.models import SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin import searching
from queue_admin.worker import QueueWorker
from tests.fault_server import FakeEmbedder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


def embed_all_with(provider):
    with QueueWorker(provider, name="test") as worker:
        return worker.run()


@pytest.fixture(autouse=True)
def fresh_caches():
    from django.core.cache import caches

    from documents.providers import factory

    searching._coverage.clear()
    caches[search.QUERY_EMBEDDING_CACHE].clear()
    factory.get_provider.cache_clear()
    factory.get_previous_provider.cache_clear()
    yield
    searching._coverage.clear()
    caches[search.QUERY_EMBEDDING_CACHE].clear()
    factory.get_provider.cache_clear()
    factory.get_previous_provider.cache_clear()


def test_the_closest_document_comes_first_with_the_local_model():
    texts = {
        "cat": "A cat is sleeping on the warm living-room rug.",
        "stocks": "Shares fell sharply as investors worried about interest rates.",
        "python": "The function returns a sorted list of the dictionary's keys.",
    }
    docs = {key: SourceDocument.objects.create(title=key, content=text) for key, text in texts.items()}
    embed_all_with(LocalEmbeddingProvider())
    result = searching.search("a kitten napping on a carpet", k=3)
    assert [hit.title for hit in result.hits][0] == "cat"
    assert [hit.score for hit in result.hits] == sorted((hit.score for hit in result.hits), reverse=True)
    assert result.hits[0].document_id == str(docs["cat"].id) and result.documents_not_covered == 0
    assert result.model == LocalEmbeddingProvider.model_id


@pytest.mark.parametrize(
    "query, k, says",
    [("", 5, "empty"), ("   ", 5, "empty"), ("x" * 10_001, 5, "10,001 characters"), ("a\x00b", 5, "NUL"),
     ("fine", 0, "k must be between 1 and 100"), ("fine", 101, "k must be between 1 and 100")],
)  # fmt: skip
def test_bad_queries_are_refused_with_a_reason(query, k, says):
    with pytest.raises(search.SearchError, match=says):
        searching.search(query, k)


def test_search_keeps_the_previous_model_until_the_new_one_covers_every_document(settings):
    with FakeEmbedder(dimensions=384) as service:
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "tei", "new-model"
        settings.EMBEDDING_BASE_URL = service.url
        settings.EMBEDDING_PREVIOUS_PROVIDER, settings.EMBEDDING_PREVIOUS_MODEL = "tei", "old-model"
        settings.EMBEDDING_PREVIOUS_BASE_URL = service.url
        docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"document {n}") for n in range(3))
        embed_all_with(TEIEmbeddingProvider(service.url, "old-model", 384))
        assert searching.search("document", k=3).model == "old-model"

        # The new model covers two of three documents: still the old model, never a mix.
        from documents.models import DocumentEmbedding
        from queue_admin import backfill

        backfill.enqueue(backfill.STALE, "new-model", priority="high", limit=2)
        embed_all_with(TEIEmbeddingProvider(service.url, "new-model", 384))
        searching._coverage.clear()
        result = searching.search("document", k=3)
        assert result.model == "old-model" and {hit.model for hit in result.hits} == {"old-model"}
        assert len(result.hits) == 3

        backfill.enqueue(backfill.STALE, "new-model", priority="high")
        embed_all_with(TEIEmbeddingProvider(service.url, "new-model", 384))
        searching._coverage.clear()
        result = searching.search("document", k=3)
        assert result.model == "new-model" and {hit.model for hit in result.hits} == {"new-model"}
        assert DocumentEmbedding.objects.filter(model="new-model").count() == len(docs)


def test_search_command_prints_ranked_hits_and_json(capsys):
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    SourceDocument.objects.create(
        title="Rainfall", content="Heavy rain is expected across the north tonight."
    )
    SourceDocument.objects.create(title="Recipe", content="Whisk the eggs with sugar until pale.")
    embed_all_with(LocalEmbeddingProvider())
    call_command("search", "weather forecast storms", "-k", "2")
    out = capsys.readouterr().out
    assert out.splitlines()[1].endswith("Rainfall")
    call_command("search", "baking a cake", "-k", "1", "--json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["results"][0]["title"] == "Recipe" and payload["model"] == LocalEmbeddingProvider.model_id
    with pytest.raises(CommandError, match="empty"):
        call_command("search", " ")


def test_the_search_commands_modes_filters_and_json_shape(capsys):
    import json

    from django.core.management import call_command
    from django.core.management.base import CommandError

    SourceDocument.objects.create(
        title="Exporter", content="The exporter calls json.dumps with sort_keys.", metadata={"lang": "en"}
    )
    SourceDocument.objects.create(
        title="Loader", content="Read JSON files with json.load.", metadata={"lang": "de"}
    )
    embed_all_with(LocalEmbeddingProvider())
    call_command("search", "json.dumps", "--json")
    payload = json.loads(capsys.readouterr().out)
    assert {"model", "mode", "text_config", "documents_not_covered", "notices", "results"} <= payload.keys()
    assert payload["mode"] == "hybrid" and payload["text_config"] == "simple"
    best = payload["results"][0]
    assert {
        "document_id", "title", "score", "snippet", "source", "source_key", "page", "heading", "chunk_index",
        "vector_score", "keyword_score", "snippet_parts",
    } <= best.keys()  # fmt: skip
    assert best["title"] == "Exporter" and best["source"] == "documents" and best["keyword_score"] > 0
    assert {"text": "json.dumps", "match": True} in best["snippet_parts"]

    call_command("search", "json", "--mode", "keyword", "--filter", '{"lang": "de"}', "-k", "3", "--json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["mode"] == "keyword" and [hit["title"] for hit in payload["results"]] == ["Loader"]
    call_command("search", "json", "--updated-before", "2000-01-01", "--json")
    assert json.loads(capsys.readouterr().out)["results"] == []

    call_command("search", "json.dumps", "-k", "1")
    out = capsys.readouterr().out
    assert "hybrid" in out.splitlines()[0] and "«json.dumps»" in out  # matches shown in a terminal
    for arguments, says in [
        (["--filter", "[1]"], "must be a JSON object"),
        (["--filter", "{"], "not valid JSON"),
        (["--updated-after", "soon"], "--updated-after must be a date"),
    ]:
        with pytest.raises(CommandError, match=says):
            call_command("search", "json", *arguments)
    with pytest.raises(CommandError, match="invalid choice: 'fuzzy'"):
        call_command("search", "json", "--mode", "fuzzy")


def _session_setting(name: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s)", [name])
        return cursor.fetchone()[0]


@pytest.fixture
def searchable(settings):
    """Three documents embedded by a TEI service on loopback that the search also asks."""
    with FakeEmbedder(dimensions=384) as service:
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "tei", "scan-model"
        settings.EMBEDDING_BASE_URL = service.url
        SourceDocument.objects.bulk_create(SourceDocument(content=f"document {n}") for n in range(3))
        embed_all_with(TEIEmbeddingProvider(service.url, "scan-model", 384))
        yield


def test_index_scan_settings_hold_for_the_search_and_never_leak_into_the_session(searchable, settings):
    """The search runs in a transaction whose settings it makes in one statement: the index
    looks at SEARCH_EF_SEARCH candidates (at least 4 × k) with iterative scans on, up to as
    many tuples as a filter keeping 1% of the rows needs; the same statement reads the
    keyword index's configuration. The session is left as it was (behind a transaction
    pooler, the next client would get it)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.SEARCH_EF_SEARCH = 120
    searching.search("document", k=3, mode="vector")  # coverage counted and cached, query vector cached
    with CaptureQueriesContext(connection) as queries:
        assert len(searching.search("document", k=3, mode="vector").hits) == 3
    statements = [query["sql"] for query in queries]
    # One transaction: the settings, the nearest chunks, the hits (the version was asked once, before).
    assert len(statements) == 5 and (statements[0], statements[-1]) == ("BEGIN", "COMMIT")
    assert "'hnsw.ef_search', '120', true" in statements[1]
    assert "'hnsw.iterative_scan', 'relaxed_order', true" in statements[1]
    assert "'hnsw.max_scan_tuples', '20000', true" in statements[1]  # pgvector's default, for 12 chunks
    assert "document_terms_config" in statements[1]
    assert _session_setting("hnsw.ef_search") == "40"  # pgvector's default: nothing leaked
    assert _session_setting("hnsw.iterative_scan") == "off"

    settings.SEARCH_EF_SEARCH = 10  # below 4 × k: 4 × k it is
    with CaptureQueriesContext(connection) as queries:
        searching.search("document", k=20, mode="vector")
    assert "'hnsw.ef_search', '80', true" in queries[1]["sql"]

    # Hybrid: each list reads at least 50 documents' worth of chunks (4 × 50), and both lists
    # run in the one transaction.
    with CaptureQueriesContext(connection) as queries:
        searching.search("document", k=3)
    statements = [query["sql"] for query in queries]
    assert len(statements) == 6 and (statements[0], statements[-1]) == ("BEGIN", "COMMIT")
    assert "'hnsw.ef_search', '200', true" in statements[1]
    assert "websearch_to_tsquery" in statements[3]

    connection.close()  # a new connection: the version is asked again
    with CaptureQueriesContext(connection) as queries:
        searching.search("document", k=3, mode="vector")
    assert "extversion" in queries[1]["sql"] and len(queries) == 6


def test_a_search_inside_a_callers_transaction_keeps_its_settings_to_that_transaction(searchable, settings):
    from django.db import transaction

    settings.SEARCH_EF_SEARCH = 150
    with transaction.atomic():
        assert len(searching.search("document", k=3, mode="vector").hits) == 3
        assert _session_setting("hnsw.ef_search") == "150"  # the caller's transaction holds it
    assert _session_setting("hnsw.ef_search") == "40"
