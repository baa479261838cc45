"""Judging results on the admin's search page, and the Search quality page: the judge POST
records and shows the same query's results again, the page runs an evaluation and shows the
runs and their trend, and who may do either. The provider is TEI at the fake embedding
service (tests/fault_server.py): this is about plumbing, not about ranking."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from documents.models import EvaluationRun, SearchJudgment, SourceDocument
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin import search_quality
from queue_admin.worker import QueueWorker

SEARCH, JUDGE, QUALITY = (
    reverse("admin:search"),
    reverse("admin:search_judge"),
    reverse("admin:search_quality"),
)


@pytest.fixture
def embedded(tei_search_service, transactional_db, seeded_config, fresh_search_caches):
    docs = [SourceDocument.objects.create(title=f"Doc {n}", content=f"document number {n}") for n in range(3)]
    provider = TEIEmbeddingProvider(tei_search_service.url, "fake-model", tei_search_service.dimensions)
    with QueueWorker(provider, name="test") as worker:
        worker.run()
    return docs


def judgment_cells(response):
    return re.findall(r'data-judgment="([a-z-]+)"', response.content.decode())


@pytest.mark.django_db(transaction=True)
def test_judging_a_result_records_it_and_shows_the_same_results_with_the_judgment(
    admin_client, admin_user, embedded
):
    response = admin_client.post(SEARCH, {"q": "document number 1", "k": "5"})
    assert judgment_cells(response) == ["none"] * 3
    html = response.content.decode()
    assert f'action="{JUDGE}"' in html and 'name="q" value="document number 1"' in html
    assert 'type="hidden" name="k" value="5"' in html

    target = response.context["hits"][0]["hit"]
    response = admin_client.post(
        JUDGE,
        {"q": "document number 1", "k": "5", "judge_document": target.document_id, "judge_relevant": "1"},
    )
    assert response.status_code == 200
    assert [row["hit"].document_id for row in response.context["hits"]][0] == target.document_id
    assert response.context["form"].cleaned_data["k"] == 5
    assert judgment_cells(response) == ["relevant", "none", "none"]
    judgment = SearchJudgment.objects.get()
    assert (judgment.query, str(judgment.document_id), judgment.relevant, judgment.judged_by) == (
        "document number 1", target.document_id, True, admin_user,
    )  # fmt: skip

    response = admin_client.post(
        JUDGE,
        {"q": "document number 1", "k": "5", "judge_document": target.document_id, "judge_relevant": "0"},
    )
    assert judgment_cells(response)[0] == "not-relevant" and SearchJudgment.objects.count() == 1


@pytest.mark.django_db
def test_a_judgment_needs_a_query_and_a_real_document_and_a_post(admin_client, document):
    assert admin_client.get(JUDGE).status_code == 405
    for data in ({"q": "", "judge_document": str(document.pk)}, {"q": "fox", "judge_document": "nope"}):
        assert admin_client.post(JUDGE, {**data, "judge_relevant": "1"}).status_code == 400
    assert not SearchJudgment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_quality_page_runs_an_evaluation_and_shows_runs_and_trend(admin_client, embedded):
    page = admin_client.get(QUALITY)
    assert page.status_code == 200 and "No evaluation has run yet." in page.content.decode()
    assert page.context["queries"] == 0
    for n in range(3):
        search_quality.judge(f"document number {n}", embedded[n].pk, True)
    response = admin_client.post(QUALITY, follow=True)
    run = EvaluationRun.objects.get()
    assert run.ran_from == "admin" and run.queries == 3
    text = re.sub(r"\s+", " ", response.content.decode())
    assert "Evaluated 3 queries: hybrid nDCG@10" in text
    assert "<code>fake-model</code>" in text and "RRF k 60" in text
    assert 'data-mode="vector">1.000 / 1.000 / 1.000' in text
    admin_client.post(QUALITY)
    page = admin_client.get(QUALITY)
    assert [line["mode"] for line in page.context["trend"]] == ["hybrid", "vector", "keyword"]
    assert page.content.decode().count("<polyline") == 3


@pytest.mark.django_db
def test_an_empty_test_set_is_a_message_not_an_error(admin_client, fresh_search_caches):
    response = admin_client.post(QUALITY, follow=True)
    assert "The test set is empty" in response.content.decode() and not EvaluationRun.objects.exists()


@pytest.mark.django_db
def test_without_the_search_permission_judging_and_the_quality_page_are_forbidden(nobody_staff, document):
    client = Client()
    client.force_login(nobody_staff)
    assert client.get(QUALITY).status_code == 403
    assert client.post(QUALITY).status_code == 403
    data = {"q": "fox", "judge_document": str(document.pk), "judge_relevant": "1"}
    assert client.post(JUDGE, data).status_code == 403
    assert not SearchJudgment.objects.exists() and not EvaluationRun.objects.exists()
    index = client.get(reverse("admin:index")).content.decode()
    assert "Search quality" not in index


@pytest.mark.django_db
def test_the_quality_page_is_listed_for_those_who_may_search(admin_client):
    assert "Search quality" in admin_client.get(reverse("admin:index")).content.decode()
