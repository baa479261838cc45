"""Hybrid search: the vector and keyword lists, their fusion by reciprocal rank, the three
modes, filters inside the query (source, metadata, time) and highlighted snippets.

Where the test is about search quality it uses the real local model; elsewhere the provider
is TEI pointed at the fake embedding service (its vectors are a hash of the text)."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from documents import search, sidecar, vector_index
from documents.models import Source, SourceDocument
from documents.providers.factory import get_provider
from documents.providers.local import LocalEmbeddingProvider
from documents.search import Candidate, reciprocal_rank_fusion
from queue_admin import searching
from queue_admin.worker import QueueWorker
from tests.helpers import run_sql

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config", "fresh_search_caches"),
]

MODES = ("vector", "keyword", "hybrid")


def embed_all_with(provider):
    with QueueWorker(provider, name="test") as worker:
        worker.run()


def titles(query, **options):
    return [hit.title for hit in searching.search(query, **options).hits]


# --- Fusion ----------------------------------------------------------------------------------


def test_reciprocal_rank_fusion_of_a_constructed_example():
    a, b, c, d = (uuid.UUID(int=n) for n in range(1, 5))
    vector = [Candidate(a, 1, 0.9), Candidate(b, 2, 0.8), Candidate(c, 3, 0.7)]
    keyword = [Candidate(c, 3, 0.5), Candidate(a, 1, 0.4), Candidate(d, 4, 0.1)]
    fused = reciprocal_rank_fusion([vector, keyword])
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63. Scores, not similarities, decide nothing.
    assert [document for document, _ in fused] == [a, c, b, d]
    assert [score for _, score in fused] == pytest.approx([1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62, 1 / 63])
    # A smaller constant favours a single top rank over two middling ones.
    top_of_one = [Candidate(a, 1, 1.0), Candidate(b, 2, 1.0), Candidate(c, 3, 1.0)]
    middling = [Candidate(b, 2, 1.0), Candidate(c, 3, 1.0), Candidate(a, 1, 1.0)]
    assert reciprocal_rank_fusion([top_of_one, middling], rrf_k=60)[0][0] == b
    assert reciprocal_rank_fusion([top_of_one, [Candidate(d, 4, 1.0), *middling]], rrf_k=1)[0][0] == a
    assert reciprocal_rank_fusion([[], []]) == []


# --- What keyword search finds that vectors miss (the local model) --------------------------

IDENTIFIERS = {
    "release notes": "Release notes for 4.2: the scheduler retries failed jobs, the dashboard loads faster, and "
    "the exporter now calls json.dumps with sort_keys so that exported files diff cleanly.",
    "dump to a file": "How to dump a Python object as JSON: the json module's dump function writes the JSON text "
    "to a file.",
    "dumps and loads": "JSON dumps and loads: converting Python dictionaries to JSON strings and back again.",
    "serialise": "To turn a Python dictionary into a JSON string, serialise it with the standard library's encoder.",
    "parse": "Parsing JSON text into Python objects: read the file and decode the JSON document.",
    "paper": "Error E1234-X: the printer in room 4 has run out of paper; refill tray 2.",
    "scanner": "Error E1234-Y: the scanner lid is open; close it and try again.",
    "toner": "Error E1243-X: the copier's toner is low; order a new cartridge.",
    "fax": "Error E4321-X: the fax line is busy; the fax will be resent.",
    "unreachable": "Error E1234: the network printer cannot be reached.",
}


@pytest.fixture
def identifiers():
    for title, text in IDENTIFIERS.items():
        SourceDocument.objects.create(title=title, content=text)
    embed_all_with(LocalEmbeddingProvider())


@pytest.mark.parametrize("query, wanted", [("json.dumps", "release notes"), ("E1234-X", "paper")])
def test_an_exact_identifier_comes_first_by_keyword_and_hybrid_where_vectors_rank_it_lower(
    identifiers, query, wanted
):
    by_meaning = titles(query, k=10, mode="vector")
    # The model sees "something about JSON" or "some error code": look-alikes come first.
    assert by_meaning.index(wanted) >= 3, by_meaning
    assert titles(query, k=10, mode="keyword") == [wanted]  # only the exact token matches
    hybrid = searching.search(query, k=10)
    assert hybrid.mode == "hybrid" and hybrid.hits[0].title == wanted
    best = hybrid.hits[0]
    assert best.keyword_score > 0 and best.vector_score is not None
    marked = [part["text"] for part in best.snippet_parts if part["match"]]
    assert marked and all(text in query for text in marked)  # E1234-X: "E1234" and "X", as parsed
    # The others came from the vector list only.
    assert all(hit.keyword_score is None for hit in hybrid.hits[1:]) and len(hybrid.hits) == 10


def test_an_identifier_only_in_the_title_is_found_by_keyword_and_a_new_title_is_searched_at_once(identifiers):
    SourceDocument.objects.create(
        title="base64.urlsafe_b64decode", content="Decode bytes using the URL- and filesystem-safe alphabet."
    )
    embed_all_with(LocalEmbeddingProvider())
    assert titles("urlsafe_b64decode", k=5, mode="keyword") == ["base64.urlsafe_b64decode"]
    assert titles("urlsafe_b64decode", k=5)[0] == "base64.urlsafe_b64decode"

    # A rename (by anyone: the admin, a mirrored row) changes the words at once, with no re-embed.
    run_sql(
        "UPDATE source_documents SET title = 'base64.b64decode_urlsafe_variant' WHERE title LIKE 'base64.%%'"
    )
    assert titles("urlsafe_b64decode", k=5, mode="keyword") == []
    assert titles("b64decode_urlsafe_variant", k=5, mode="keyword") == ["base64.b64decode_urlsafe_variant"]


def test_remaking_every_chunks_terms_reads_the_titles(identifiers):
    """What documents migration 0014 runs on the chunks already there."""
    from documents import keyword_index

    SourceDocument.objects.create(title="quokka", content="A small animal of Western Australia.")
    embed_all_with(LocalEmbeddingProvider())
    run_sql("UPDATE document_chunk_terms SET terms = to_tsvector('simple', 'nothing')")  # as before 0014
    assert titles("quokka", k=5, mode="keyword") == []
    assert keyword_index.remake_all_terms(batch=2) == len(IDENTIFIERS) + 1
    assert titles("quokka", k=5, mode="keyword") == ["quokka"]  # a word of its title only
    assert titles("paper", k=5, mode="keyword") == ["paper"]


# --- Fake vectors: modes, operators, filters --------------------------------------------------


@pytest.fixture
def provider(tei_search_service):
    return get_provider()


OPERATOR_QUERIES = [
    "a & b", "a | b", "!a", "a:*", ":*", '"unterminated', '""', "'", "\\", "(a", "a)", "<->", "a <-> b",
    "-", "--", "or", "a or", "-a", "&&&", "'; DROP TABLE document_embeddings; --", "%s", "%(x)s", "{}",
    "été naïve", "日本語のテキスト", "a:B*", "a & (b | !c)", "e1234-x:*",
]  # fmt: skip


@pytest.mark.parametrize("query", OPERATOR_QUERIES)
def test_operators_that_people_type_are_text_and_never_an_error(provider, query, client, django_user_model):
    SourceDocument.objects.create(title="a", content="a b c and some more text, été naïve")
    embed_all_with(provider)
    for mode in ("keyword", "hybrid"):
        searching.search(query, k=5, mode=mode)  # no exception
    client.force_login(django_user_model.objects.create_user("reader"))
    response = client.get("/api/search", {"q": query})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("query", ["the of and", "!!! ... ---", "& | !"])
def test_a_query_without_words_gives_no_keyword_list_and_hybrid_falls_back_to_vectors(
    provider, settings, query
):
    from documents import keyword_index

    SourceDocument.objects.bulk_create(
        SourceDocument(title=f"d{n}", content=f"document {n} of the set") for n in range(5)
    )
    embed_all_with(provider)
    settings.SEARCH_TEXT_CONFIG = "english"  # "the of and" is all stop words in english
    keyword_index.rebuild()
    try:
        assert searching.search(query, k=5, mode="keyword").hits == []
        assert titles(query, k=5, mode="hybrid") == titles(query, k=5, mode="vector")
    finally:
        keyword_index.rebuild("simple")


def test_each_mode_and_its_scores(provider):
    SourceDocument.objects.create(title="exact", content="document number 1")
    SourceDocument.objects.create(title="other", content="a different text")
    embed_all_with(provider)
    vector = searching.search("document number 1", k=2, mode="vector")
    assert [hit.title for hit in vector.hits][0] == "exact"
    assert all(hit.keyword_score is None and hit.score == hit.vector_score for hit in vector.hits)
    keyword = searching.search("document number 1", k=2, mode="keyword")
    assert [hit.title for hit in keyword.hits] == ["exact"]
    assert keyword.hits[0].vector_score is None and keyword.hits[0].score == keyword.hits[0].keyword_score
    hybrid = searching.search("document number 1", k=2)
    assert [hit.title for hit in hybrid.hits] == ["exact", "other"]
    assert hybrid.hits[0].score == pytest.approx(2 / 61, abs=1e-6)
    assert hybrid.hits[1].score == pytest.approx(1 / 62, abs=1e-6)
    with pytest.raises(search.SearchError, match="mode must be one of hybrid, vector, keyword, not 'fuzzy'"):
        searching.search("document", mode="fuzzy")


def test_keyword_mode_never_asks_the_provider(tei_search_service, provider):
    SourceDocument.objects.create(title="exact", content="document number 1")
    embed_all_with(provider)
    tei_search_service.reset()
    assert titles("number", k=5, mode="keyword") == ["exact"]
    assert tei_search_service.count() == 0


def test_snippets_mark_the_query_words_as_data_not_html(provider):
    text = "<b>Bold</b> claims & «quotes»: use json.dumps \ue000 here, then <script>alert(1)</script>."
    SourceDocument.objects.create(title="html", content=text)
    embed_all_with(provider)
    hit = searching.search("json.dumps claims", k=1, mode="keyword").hits[0]
    assert [part["text"] for part in hit.snippet_parts if part["match"]] == ["claims", "json.dumps"]
    # Plain text, the callers escape it: nothing added. PostgreSQL's parser reads <b>, <script>
    # as tags, which ts_headline leaves out; the marker character cannot come from a document.
    # The whole (one-chunk) document: no ellipsis, outer spaces trimmed.
    assert hit.snippet == "Bold  claims & «quotes»: use json.dumps  here, then  alert(1) ."
    assert "".join(part["text"] for part in hit.snippet_parts) == hit.snippet


@pytest.fixture
def tenants(provider):
    """Three documents with the same words and different metadata, sources and times."""
    wiki = Source.objects.create(name="wiki", kind=Source.Kind.UPLOADS)
    rows = {
        "en-42": ({"lang": "en", "tenant": 42, "tags": ["a", "b"]}, None, 30),
        "de-42": ({"lang": "de", "tenant": 42}, None, 10),
        "en-7 in the wiki": ({"lang": "en", "tenant": 7}, wiki, 1),
    }
    now = datetime.now(UTC)
    for title, (metadata, source, days_ago) in rows.items():
        extra = {"source": source, "source_key": f"page-{title}"} if source else {}
        document = SourceDocument.objects.create(
            title=title, content="quarterly report", metadata=metadata, **extra
        )
        run_sql(
            "UPDATE source_documents SET updated_at = %s WHERE id = %s",
            [now - timedelta(days=days_ago), document.id],
        )
    embed_all_with(provider)
    return now


@pytest.mark.parametrize("mode", MODES)
def test_each_filter_in_each_mode(tenants, mode):
    now = tenants

    def found(**filters):
        return sorted(titles("quarterly report", k=10, mode=mode, **filters))

    assert found() == ["de-42", "en-42", "en-7 in the wiki"]
    assert found(metadata={"lang": "en"}) == ["en-42", "en-7 in the wiki"]
    assert found(metadata={"lang": "en", "tenant": 42}) == ["en-42"]
    assert found(metadata={"tags": ["b"]}) == ["en-42"]  # containment, as jsonb's @>
    assert found(metadata={"tenant": "42"}) == []  # a string is not the number 42
    assert found(metadata={}) == found()
    assert found(source="wiki") == ["en-7 in the wiki"]
    assert found(source="documents", metadata={"tenant": 42}) == ["de-42", "en-42"]
    assert found(updated_after=now - timedelta(days=20)) == ["de-42", "en-7 in the wiki"]
    assert found(updated_before=now - timedelta(days=5)) == ["de-42", "en-42"]
    assert found(updated_after=now - timedelta(days=20), updated_before=now - timedelta(days=5)) == ["de-42"]
    hit = searching.search("quarterly report", k=10, mode=mode, source="wiki").hits[0]
    assert (hit.source, hit.source_key) == ("wiki", "page-en-7 in the wiki")


def test_bad_filters_are_refused_with_the_reason(tenants):
    now = tenants
    cases = [
        ({"metadata": ["lang", "en"]}, "must be a JSON object"),
        ({"metadata": {"lang": "a\x00b"}}, "NUL byte"),
        ({"metadata": {"x": float("nan")}}, "JSON cannot hold"),
        ({"source": "nope"}, "no source named 'nope'"),
        ({"updated_after": now, "updated_before": now}, "is not before updated_before"),
    ]
    for options, says in cases:
        with pytest.raises(search.SearchError, match=says):
            searching.search("report", k=5, **options)


# --- A filter that keeps 1% of the chunks -----------------------------------------------------

TENANTS = 100
CHUNKS = 3_000


@pytest.fixture
def three_thousand_chunks(provider, settings):
    """3,000 documents of one chunk each with random vectors, in 100 tenants of 30 (written
    through the workers' own write path); only tenant 7 has the word 'needle'."""
    documents = SourceDocument.objects.bulk_create(
        SourceDocument(
            title=f"t{n % TENANTS}-{n}",
            content=f"entry {n}" + (" needle" if n % TENANTS == 7 else ""),
            metadata={"tenant": n % TENANTS},
        )
        for n in range(CHUNKS)
    )
    run_sql("DELETE FROM embedding_queue")  # written below, not by a worker
    vectors = (
        np.random.default_rng(7).standard_normal((CHUNKS, settings.EMBEDDING_DIMENSIONS)).astype(np.float32)
    )
    with transaction.atomic():
        sidecar.replace_chunks(
            {
                document.id: (
                    "hash",
                    [sidecar.Chunk(0, document.content, "h", vector / np.linalg.norm(vector), 3)],
                )
                for document, vector in zip(documents, vectors, strict=True)
            },
            provider.model_id,
        )
    vector_index.build(provider.model_id, concurrently=False)  # 3,000 chunks: under the policy's threshold
    run_sql("ANALYZE source_documents, document_embeddings")


def test_a_filter_keeping_one_percent_of_the_chunks_still_returns_k_results(
    three_thousand_chunks, monkeypatch
):
    k = 10
    one_tenant = {"tenant": 7}
    for mode in MODES:
        hits = searching.search("entry needle", k=k, mode=mode, metadata=one_tenant).hits
        assert len(hits) == k, mode
        assert {hit.title.split("-")[0] for hit in hits} == {"t7"}

    # The same through the HNSW index, which filters only after its search: a filter keeping
    # this few documents is searched exactly (the next test), and the planner may prefer an
    # exact scan of 30 rows too, so take both choices away. The iterative scan goes on
    # until enough rows pass; without it, the index's 100 candidates hold about 1 of them.
    def through_the_index(iterative: str):
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            run_sql("SET LOCAL enable_sort = off")
            run_sql("SET LOCAL enable_seqscan = off")
            if iterative == "off":  # after the search's own settings: pretend pgvector 0.7
                search._iterative_scan[connection.connection] = False
            hits = searching.search("entry needle", k=k, mode="vector", metadata=one_tenant).hits
            search._iterative_scan.pop(connection.connection, None)
            nearest_sql = next(query["sql"] for query in queries if "<=>" in query["sql"])
            plan = "\n".join(row for (row,) in run_sql("EXPLAIN " + nearest_sql))
        return hits, plan

    monkeypatch.setattr(search, "EXACT_SEARCH_MAX_DOCUMENTS", 0)
    hits, plan = through_the_index("relaxed_order")
    assert vector_index.index_name(get_provider().model_id) in plan, plan
    assert len(hits) == k and {hit.title.split("-")[0] for hit in hits} == {"t7"}
    hits, _ = through_the_index("off")
    assert len(hits) < k / 2  # what the iterative scan saves


def nearest_sql_and_plan(**options):
    """The hits and the plan of the nearest-chunks query. Sorting is made to look dear, as it
    is at 100,000 chunks (where the planner picks the HNSW index for a filter keeping 1%): at
    3,000 the planner would pick an exact scan of 30 rows on its own, which proves nothing."""
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        run_sql("SET LOCAL enable_sort = off")
        hits = searching.search("entry needle", k=10, mode="vector", **options).hits
        nearest_sql = next(query["sql"] for query in queries if "<=>" in query["sql"])
        plan = "\n".join(row for (row,) in run_sql("EXPLAIN " + nearest_sql))
    return hits, plan


def test_a_selective_filter_is_searched_exactly_and_finds_the_true_nearest(three_thousand_chunks, settings):
    """30 of 3,000 documents pass: their chunks are read through the documents' indexes and
    sorted by exact distance, never through the HNSW index (which would walk ~100 times as
    many rows); the answer is the true top 10 of the tenant, computed here from the vectors."""
    hits, plan = nearest_sql_and_plan(metadata={"tenant": 7})
    assert "hnsw" not in plan, plan
    assert "source_documents_metadata_gin" in plan, plan

    query = get_provider().embed(["entry needle"]).vectors[0]
    rows = run_sql(
        """SELECT d.title, e.embedding::text FROM document_embeddings e
             JOIN source_documents d ON d.id = e.document_id WHERE d.metadata @> '{"tenant": 7}'"""
    )
    distances = {title: 1 - float(np.dot(json.loads(vector), query)) for title, vector in rows}
    true_top = sorted(distances, key=distances.get)[:10]
    assert [hit.title for hit in hits] == true_top
