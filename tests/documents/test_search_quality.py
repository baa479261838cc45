"""Search quality: the metrics on hand-computed examples, judgments and the test set they
make, its JSON Lines export and import (bad lines refused by number, all or nothing), an
evaluation run through `evaluate_search`, and the shipped judgments of the sample corpus.

The evaluation is about plumbing, so its provider is TEI at the fake embedding service (a
vector is a hash of the text: a query equal to a document's text finds it first)."""

import io
import json
import math

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from documents.models import EvaluationRun, SearchJudgment, SourceDocument
from documents.providers.tei import TEIEmbeddingProvider
from documents.samples import load_sample_documents
from queue_admin import search_quality
from queue_admin.search_quality import JudgmentFileError, ndcg_at_10, recall_at_k, reciprocal_rank
from queue_admin.worker import QueueWorker

# --- Metrics ----------------------------------------------------------------------------------


def test_recall_at_k_counts_the_relevant_documents_in_the_first_k():
    ranked = ["a", "x", "b", "y", "c"]
    assert recall_at_k(ranked, {"a", "b", "c", "d"}, 3) == 2 / 4
    assert recall_at_k(ranked, {"a", "b", "c", "d"}, 5) == 3 / 4
    assert recall_at_k(ranked, {"z"}, 5) == 0
    assert recall_at_k([], {"a"}, 10) == 0


def test_reciprocal_rank_is_one_over_the_first_relevant_rank_within_k():
    assert reciprocal_rank(["x", "y", "a", "b"], {"a", "b"}, 10) == 1 / 3
    assert reciprocal_rank(["a"], {"a"}, 10) == 1
    assert reciprocal_rank(["x", "y", "a"], {"a"}, 2) == 0  # beyond k
    assert reciprocal_rank([], {"a"}, 10) == 0


def test_ndcg_at_10_on_hand_computed_examples():
    # Relevant at ranks 1 and 3 of two relevant: (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.63093.
    assert ndcg_at_10(["a", "x", "b"], {"a", "b"}) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_10(["a", "b"], {"a", "b"}) == 1
    # One relevant at rank 2: 1/log2(3) = 0.63093.
    assert ndcg_at_10(["x", "a"], {"a"}) == pytest.approx(0.6309, abs=1e-4)
    # Beyond rank 10 earns nothing; more than 10 relevant caps the ideal at 10.
    assert ndcg_at_10([*"xxxxxxxxxx", "a"], {"a"}) == 0
    many = {f"d{n}" for n in range(15)}
    assert ndcg_at_10(sorted(many)[:10], many) == 1


# --- Judgments and the test set ----------------------------------------------------------------


@pytest.fixture
def three(db):
    return [SourceDocument.objects.create(title=f"Doc {n}", content=f"document number {n}") for n in range(3)]


def test_judging_again_updates_and_the_query_is_normalised(three, admin_user):
    first = search_quality.judge("  how   to\tparse ", three[0].pk, True, admin_user)
    again = search_quality.judge("how to parse", three[0].pk, False)
    assert first.pk == again.pk and SearchJudgment.objects.count() == 1
    judgment = SearchJudgment.objects.get()
    assert (judgment.query, judgment.relevant, judgment.judged_by) == ("how to parse", False, None)


def test_the_test_set_is_the_queries_with_a_relevant_document(three):
    search_quality.judge("q1", three[0].pk, True)
    search_quality.judge("q1", three[1].pk, True)
    search_quality.judge("q1", three[2].pk, False)
    search_quality.judge("q2", three[2].pk, False)  # nothing relevant: not a test query
    assert search_quality.test_set() == {"q1": {str(three[0].pk), str(three[1].pk)}}


def test_deleting_a_document_in_sql_deletes_its_judgments(three, sql):
    search_quality.judge("q", three[0].pk, True)
    sql("DELETE FROM source_documents WHERE id = %s", [three[0].pk])
    assert not SearchJudgment.objects.exists()


def test_export_then_import_gives_the_same_test_set(three):
    search_quality.judge("q1", three[0].pk, True)
    search_quality.judge("q2", three[1].pk, True)
    search_quality.judge("q2", three[2].pk, True)
    exported = io.StringIO()
    assert search_quality.export_jsonl(exported) == 2
    lines = [json.loads(line) for line in exported.getvalue().splitlines()]
    assert lines[0] == {"query": "q1", "relevant": [str(three[0].pk)]}
    before = search_quality.test_set()
    SearchJudgment.objects.all().delete()
    assert search_quality.import_jsonl(io.StringIO(exported.getvalue())) == 3
    assert search_quality.test_set() == before


def test_bad_lines_are_each_reported_by_number_and_nothing_is_imported(three):
    good = json.dumps({"query": "fine", "relevant": [str(three[0].pk)]})
    text = "\n".join([
        good,
        "{not json",
        json.dumps({"query": "no relevant key"}),
        json.dumps({"query": "unknown", "relevant": ["00000000-0000-0000-0000-000000000000"]}),
        json.dumps({"query": "not an id", "relevant": ["doc-1"]}),
        json.dumps({"query": "", "relevant": [str(three[0].pk)]}),
        json.dumps(["a list"]),
    ])  # fmt: skip
    with pytest.raises(JudgmentFileError) as raised:
        search_quality.import_jsonl(io.StringIO(text))
    message = str(raised.value)
    for number, says in [
        (2, "not JSON"),
        (3, 'expected the keys "query" and "relevant"'),
        (4, "no document with the id 00000000-0000-0000-0000-000000000000"),
        (5, "no document with the id doc-1"),
        (6, '"query" must be a non-empty string'),
        (7, 'expected the keys "query" and "relevant"'),
    ]:
        assert f"line {number}: {says}" in message
    assert "line 1" not in message
    assert not SearchJudgment.objects.exists()


def test_the_import_command_says_what_is_wrong(three, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q"}\n')
    with pytest.raises(CommandError, match="line 1"):
        call_command("search_judgments", "import", str(bad))
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"query": "q", "relevant": [str(three[1].pk)]}) + "\n")
    call_command("search_judgments", "import", str(good), stdout=io.StringIO())
    out = tmp_path / "out.jsonl"
    call_command("search_judgments", "export", str(out), stdout=io.StringIO())
    assert out.read_text() == good.read_text()


# --- Evaluation --------------------------------------------------------------------------------


@pytest.fixture
def embedded(tei_search_service, transactional_db, seeded_config, fresh_search_caches):
    docs = [SourceDocument.objects.create(title=f"Doc {n}", content=f"document number {n}") for n in range(4)]
    provider = TEIEmbeddingProvider(tei_search_service.url, "fake-model", tei_search_service.dimensions)
    with QueueWorker(provider, name="test") as worker:
        worker.run()
    return docs


@pytest.mark.django_db(transaction=True)
def test_evaluate_search_measures_every_mode_and_stores_the_run(embedded, settings):
    for n in (1, 2):
        search_quality.judge(f"document number {n}", embedded[n].pk, True)
    out = io.StringIO()
    call_command("evaluate_search", "--json", stdout=out)
    report = json.loads(out.getvalue())
    run = EvaluationRun.objects.get()
    assert report["id"] == run.pk and run.queries == 2 and run.ran_from == "shell" and run.k == 10
    assert set(run.metrics) == {"vector", "keyword", "hybrid"}
    # The fake's vectors: the query equal to a document's text is its nearest, at rank 1.
    assert run.metrics["vector"] == {"recall": 1.0, "mrr": 1.0, "ndcg_10": 1.0}
    assert run.model == "fake-model" and run.chunking["overlap_tokens"] > 0
    assert run.search_settings == {
        "ef_search": settings.SEARCH_EF_SEARCH,
        "text_config": settings.SEARCH_TEXT_CONFIG,
        "rrf_k": 60,
    }
    assert [entry["query"] for entry in run.per_query] == ["document number 1", "document number 2"]
    assert run.per_query[0]["ranks"]["vector"] == [1]

    table = io.StringIO()
    call_command("evaluate_search", "-k", "3", stdout=table)
    text = table.getvalue()
    assert "recall@3" in text and "hybrid" in text and "keyword" in text and "fake-model" in text
    assert EvaluationRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_evaluate_search_reads_a_file_and_refuses_an_empty_set(embedded, tmp_path):
    with pytest.raises(CommandError, match="The test set is empty"):
        call_command("evaluate_search", stdout=io.StringIO())
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"query": "document number 3", "relevant": [str(embedded[3].pk)]}) + "\n")
    call_command("evaluate_search", str(path), stdout=io.StringIO())
    assert EvaluationRun.objects.get().queries == 1
    assert not SearchJudgment.objects.exists()  # a file is measured, not stored as judgments


# --- The shipped judgments of the sample corpus ---------------------------------------------------


def test_the_shipped_judgments_resolve_against_the_demo_sample_corpus(db):
    lines = [json.loads(line) for line in search_quality.SAMPLE_JUDGMENTS.read_text().splitlines()]
    assert len(lines) >= 30 and all(set(line) == {"query", "relevant_titles"} for line in lines)
    load_sample_documents(500)  # what `make demo` loads
    recorded, missing = search_quality.load_sample_judgments()
    assert missing == []
    assert recorded == sum(len(line["relevant_titles"]) for line in lines)
    assert len(search_quality.test_set()) == len(lines)
