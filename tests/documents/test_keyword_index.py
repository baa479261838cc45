"""Keyword search's index (documents/keyword_index.py, documents/sql/keyword_search.sql): each
chunk's words kept by triggers for every write, in the configuration the migration set from
SEARCH_TEXT_CONFIG; `manage.py rebuild_search_index` switching it without a migration (and
finishing an interrupted switch); the query using the GIN index; and what searches say when the
configuration differs from the setting or is not set up.

The provider is TEI pointed at the fake embedding service: these tests are about words, not
meaning.
"""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from documents import keyword_index
from documents.keyword_index import Configs, KeywordIndexError
from documents.models import ChunkTerms, DocumentEmbedding, SourceDocument
from documents.providers.factory import get_provider
from queue_admin import searching
from queue_admin.worker import QueueWorker
from tests.helpers import run_sql

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config", "fresh_search_caches", "tei_search_service"),
]


@pytest.fixture(autouse=True)
def simple_afterwards():
    """The configuration row outlives a test's flush (it is not a Django model): put it back."""
    yield
    run_sql(f"DELETE FROM {keyword_index.CONFIG_TABLE}")
    run_sql(f"INSERT INTO {keyword_index.CONFIG_TABLE} (config) VALUES ('simple')")


def embed_all():
    with QueueWorker(get_provider(), name="test") as worker:
        worker.run()


def keyword_titles(query: str) -> list[str]:
    return sorted(hit.title for hit in searching.search(query, k=10, mode="keyword").hits)


def test_every_chunk_written_gets_its_terms_by_the_migrations_configuration():
    assert keyword_index.current() == Configs("simple", None)
    document = SourceDocument.objects.create(title="nightly", content="The backup job runs every night.")
    embed_all()
    chunk = DocumentEmbedding.objects.get(document=document)
    terms = ChunkTerms.objects.get(chunk=chunk)
    assert (terms.document_id, terms.model, terms.config) == (document.id, chunk.model, "simple")
    # simple: no stemming, no stop words; the title first, at weight A
    assert terms.terms == "'backup':4 'every':7 'job':5 'night':8 'nightly':1A,2A 'runs':6 'the':3"

    # A chunk written by anyone else gets its terms too (the triggers are the database's).
    run_sql(
        """INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash,
                   document_text_hash, embedding, model, token_count, created_at, updated_at)
           SELECT document_id, 1, 'written by hand', 'x', 'x', embedding, model, 3, now(), now()
             FROM document_embeddings WHERE id = %s""",
        [chunk.id],
    )
    assert keyword_titles("hand") == ["nightly"]
    # Deleting the document deletes its chunks and their terms.
    document.delete()
    assert not ChunkTerms.objects.exists()


def test_rebuild_from_simple_to_english_turns_on_stemming_and_writes_follow(settings, capsys):
    SourceDocument.objects.create(title="nightly", content="The backup job runs every night.")
    embed_all()
    # `simple` keeps words as they are: "running" is not "runs".
    assert keyword_titles("running") == []
    assert keyword_titles("runs") == ["nightly"]

    settings.SEARCH_TEXT_CONFIG = "english"
    call_command("rebuild_search_index")
    assert "'simple' → 'english'; 1 chunks indexed again" in capsys.readouterr().out
    assert keyword_index.current() == Configs("english", None)
    assert set(ChunkTerms.objects.values_list("config", flat=True)) == {"english"}
    assert keyword_titles("running") == ["nightly"]  # english stems both to "run"

    # Chunks the workers write afterwards get english terms; an edit replaces the old words.
    edited = SourceDocument.objects.create(title="hourly", content="A report ran hourly.")
    SourceDocument.objects.create(title="weekly", content="Reports are sent weekly.")
    embed_all()
    assert keyword_titles("reporting") == ["hourly", "weekly"]
    edited.content = "An invoice went out."
    edited.save()
    embed_all()
    assert keyword_titles("reporting") == ["weekly"] and keyword_titles("invoices") == ["hourly"]
    result = searching.search("running", k=5, mode="keyword")
    assert result.text_config == "english" and result.notices == ()

    call_command("rebuild_search_index")
    assert "already uses 'english' for every chunk; nothing to do" in capsys.readouterr().out


def test_the_keyword_query_uses_the_gin_index():
    SourceDocument.objects.create(title="a", content="json.dumps writes a string")
    SourceDocument.objects.bulk_create(SourceDocument(content=f"document {n}") for n in range(300))
    embed_all()
    run_sql("ANALYZE document_chunk_terms")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        run_sql("SET LOCAL enable_seqscan = off")  # a small table: show what it would do with a big one
        searching.search("json.dumps", k=5, mode="keyword")
        keyword_sql = next(query["sql"] for query in queries if "ts_rank" in query["sql"])
        plan = "\n".join(row for (row,) in run_sql("EXPLAIN " + keyword_sql))
    assert "document_chunk_terms_gin" in plan, plan


def test_until_the_rebuild_searches_keep_the_configuration_and_say_so(settings):
    SourceDocument.objects.create(title="nightly", content="The backup job runs every night.")
    embed_all()
    settings.SEARCH_TEXT_CONFIG = "english"  # changed, not rebuilt yet
    result = searching.search("running", k=5, mode="hybrid")
    assert result.text_config == "simple"
    assert [hit.keyword_score for hit in result.hits] == [None]  # simple: no stemming yet
    assert len(result.notices) == 1 and "rebuild_search_index" in result.notices[0]
    assert "'simple'" in result.notices[0] and "'english'" in result.notices[0]
    assert searching.search("running", k=5, mode="vector").notices == ()  # vectors do not care


def test_an_interrupted_rebuild_still_finds_both_ways_and_is_finished_by_running_it_again(settings, capsys):
    SourceDocument.objects.create(title="done", content="The job was running late.")
    SourceDocument.objects.create(title="not yet", content="The job was running early.")
    embed_all()
    # What a rebuild to english stopped half-way leaves: the row says so, one chunk is rebuilt.
    run_sql(f"UPDATE {keyword_index.CONFIG_TABLE} SET config = 'english', rebuilding_from = 'simple'")
    run_sql(
        """UPDATE document_chunk_terms t SET config = 'english', terms = to_tsvector('english', e.source_text)
             FROM document_embeddings e JOIN source_documents d ON d.id = e.document_id
            WHERE e.id = t.embedding_id AND d.title = 'done'"""
    )
    # "running" as english reads it ("run") finds the rebuilt chunk, as simple reads it the other.
    result = searching.search("running", k=5, mode="keyword")
    assert sorted(hit.title for hit in result.hits) == ["done", "not yet"]
    assert "being rebuilt from the text search configuration 'simple' to 'english'" in result.notices[0]

    with pytest.raises(CommandError, match="from 'simple' to 'english' has not finished: finish it first"):
        call_command("rebuild_search_index", "--config", "german")
    settings.SEARCH_TEXT_CONFIG = "english"
    call_command("rebuild_search_index")
    assert "1 chunks indexed again" in capsys.readouterr().out
    assert keyword_index.current() == Configs("english", None)
    assert set(ChunkTerms.objects.values_list("config", flat=True)) == {"english"}
    assert searching.search("running", k=5, mode="keyword").notices == ()


def test_a_configuration_the_database_does_not_have_is_refused_with_the_list(settings):
    settings.SEARCH_TEXT_CONFIG = "klingon"
    with pytest.raises(CommandError, match="'klingon' is not a text search configuration.*english.*simple"):
        call_command("rebuild_search_index")
    assert keyword_index.current() == Configs("simple", None)  # untouched
    with pytest.raises(CommandError, match="'public.english' is not a text search configuration"):
        call_command("rebuild_search_index", "--config", "public.english")
    call_command("rebuild_search_index", "--config", "pg_catalog.english")  # qualified: fine
    assert keyword_index.current() == Configs("english", None)


def test_without_its_configuration_row_keyword_search_says_what_to_run(client, django_user_model):
    SourceDocument.objects.create(title="nightly", content="The backup job runs every night.")
    embed_all()
    run_sql(f"DELETE FROM {keyword_index.CONFIG_TABLE}")
    for mode in ("keyword", "hybrid"):
        with pytest.raises(KeywordIndexError, match="rebuild_search_index"):
            searching.search("backup", k=5, mode=mode)
    # Vector search does not need it; its snippets still mark the query's words.
    hit = searching.search("backup", k=5, mode="vector").hits[0]
    assert {"text": "backup", "match": True} in hit.snippet_parts

    client.force_login(django_user_model.objects.create_user("reader"))
    response = client.get("/api/search", {"q": "backup"})
    assert response.status_code == 503 and "rebuild_search_index" in response.json()["error"]
    assert "mode=vector" in response.json()["error"]
    with pytest.raises(CommandError, match="rebuild_search_index"):
        call_command("search", "backup")

    keyword_index.rebuild()
    assert keyword_index.current() == Configs("simple", None)
    assert keyword_titles("backup") == ["nightly"]


def test_rebuild_reports_progress_batch_by_batch():
    SourceDocument.objects.bulk_create(SourceDocument(content=f"document {n}") for n in range(25))
    embed_all()
    seen = []
    result = keyword_index.rebuild(
        "english", progress=lambda done, total: seen.append((done, total)), batch=10
    )
    assert result.chunks == 25
    assert seen == [(0, 25), (10, 25), (20, 25), (25, 25)]
