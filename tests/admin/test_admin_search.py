"""The admin's semantic search page (/admin/search/): results, every bad input and outage as
a message on the page (never a 500), and who may use it.

Where the test is about search quality it uses the real local model; elsewhere the provider
is TEI pointed at the fake embedding service (tests/fault_server.py), which is fast and
counts the requests that reach it."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from documents.models import SourceDocument
from documents.providers import factory
from documents.providers.local import LocalEmbeddingProvider
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin.worker import QueueWorker

URL = reverse("admin:search")


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_search_caches):
    pass


@pytest.fixture
def service(tei_search_service):
    return tei_search_service


def embed_all_with(provider):
    with QueueWorker(provider, name="test") as worker:
        return worker.run()


def page_text(response):
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def embedded_by_the_fake(service, transactional_db, seeded_config):
    """Three documents embedded with the fake model, and one it does not cover yet."""
    docs = [SourceDocument.objects.create(title=f"Doc {n}", content=f"document number {n}") for n in range(3)]
    embed_all_with(TEIEmbeddingProvider(service.url, "fake-model", service.dimensions))
    service.reset()
    SourceDocument.objects.create(title="Not yet", content="written after the workers ran")
    return docs


@pytest.mark.django_db(transaction=True)
def test_results_show_rank_score_title_link_snippet_model_and_coverage(admin_client, embedded_by_the_fake):
    docs = embedded_by_the_fake
    # The fake's vectors are a hash of the text: the query equal to a document's text finds it.
    response = admin_client.post(URL, {"q": "document number 1", "k": "5"})
    assert response.status_code == 200
    rows = response.context["hits"]
    assert [row["rank"] for row in rows] == [1, 2, 3]
    best = rows[0]
    assert best["hit"].title == "Doc 1" and best["hit"].vector_score == pytest.approx(1.0, abs=1e-3)
    assert best["url"] == reverse("admin:documents_sourcedocument_change", args=[docs[1].pk])
    text = page_text(response)
    assert f'<a href="{best["url"]}">Doc 1</a>' in text
    assert "<mark>document</mark> <mark>number</mark> <mark>1</mark>" in text  # the query's words marked
    assert "Answered by <code>fake-model</code>" in text
    assert "1 document is not covered by this model yet" in text


@pytest.mark.django_db(transaction=True)
def test_a_get_link_searches_too_and_k_limits_the_results(admin_client, embedded_by_the_fake):
    response = admin_client.get(URL, {"q": "document number 2", "k": "5"})
    assert response.context["hits"][0]["hit"].title == "Doc 2"
    assert len(admin_client.get(URL, {"q": "document", "k": "5"}).context["hits"]) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_matches_are_marked_and_the_documents_text_stays_text(admin_client, service):
    SourceDocument.objects.create(
        title="<i>Doc</i>", content='Call json.dumps & see "x < y" <img src=x onerror=alert(1)>'
    )
    embed_all_with(TEIEmbeddingProvider(service.url, "fake-model", service.dimensions))
    text = page_text(admin_client.post(URL, {"q": "json.dumps", "k": "5"}))
    assert "<mark>json.dumps</mark> &amp; see &quot;x &lt; y&quot;" in text
    assert "<img" not in text and "<i>Doc</i>" not in text and "&lt;i&gt;Doc&lt;/i&gt;" in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_the_closest_document_comes_first_with_the_local_model(admin_client):
    texts = {
        "Cat": "A cat is sleeping on the warm living-room rug.",
        "Stocks": "Shares fell sharply as investors worried about interest rates.",
        "Python": "The function returns a sorted list of the dictionary's keys.",
    }
    for title, text in texts.items():
        SourceDocument.objects.create(title=title, content=text)
    embed_all_with(LocalEmbeddingProvider())
    response = admin_client.post(URL, {"q": "a kitten napping on a carpet", "k": "5"})
    titles = [row["hit"].title for row in response.context["hits"]]
    assert titles[0] == "Cat" and sorted(titles) == sorted(texts)
    assert f"Answered by <code>{LocalEmbeddingProvider.model_id}</code>" in page_text(response)
    assert "Every document with text is covered." in page_text(response)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, says",
    [
        ("", "Type a few words to search for."),
        ("    ", "Type a few words to search for."),
        ("x" * 100_000, "The query has 100,000 characters; the most is 10,000."),
        ("fox\x00", "Null characters are not allowed."),
        ("fox\x07bell", "The query contains a control character (U+0007) at position 4"),
        ("\x1b[31mred", "control character (U+001B) at position 1"),
    ],
)
def test_bad_queries_get_a_message_next_to_the_box_and_reach_no_model(admin_client, service, query, says):
    for method in (admin_client.post, admin_client.get):
        response = method(URL, {"q": query, "k": "10"})
        assert response.status_code == 200
        error = re.search(r'id="query-error">(.*?)</div>', response.content.decode(), re.S).group(1)
        assert says in error.replace("&#x27;", "'")
    assert service.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("k", ["0", "7", "101", "ten", "-5"])
def test_a_bad_number_of_results_is_refused(admin_client, service, k):
    response = admin_client.get(URL, {"q": "fox", "k": k})
    assert response.status_code == 200 and 'id="k-error"' in response.content.decode()
    assert service.count() == 0


@pytest.mark.django_db
def test_a_fresh_page_shows_the_form_without_complaints(admin_client):
    response = admin_client.get(URL)
    html = response.content.decode()
    assert response.status_code == 200 and 'name="q"' in html and "errornote" not in html


@pytest.mark.django_db
def test_an_empty_index_says_to_run_a_backfill_without_calling_the_model(admin_client, service):
    SourceDocument.objects.create(title="Waiting", content="not embedded yet")
    response = admin_client.post(URL, {"q": "anything", "k": "10"})
    text = page_text(response)
    assert "Nothing is embedded yet with <code>fake-model</code>: 1 document is waiting." in text
    assert reverse("admin:documents_sourcedocument_backfill") in text
    assert service.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_provider_that_refuses_connections_gets_a_friendly_message(
    admin_client, embedded_by_the_fake, settings, refused_url
):
    settings.EMBEDDING_BASE_URL = refused_url
    settings.EMBEDDING_HTTP_ATTEMPTS = 1
    factory.get_provider.cache_clear()
    response = admin_client.post(URL, {"q": "document number 1", "k": "10"})
    assert response.status_code == 200
    outage = page_text(response)
    assert "The embedding model is not answering (transient error)" in outage
    assert refused_url not in outage  # the provider's address stays in the logs


@pytest.mark.django_db(transaction=True)
def test_an_open_circuit_breaker_gets_the_same_message_without_a_call(
    admin_client, embedded_by_the_fake, service
):
    from queue_admin import limits

    for _ in range(5):
        limits.record_failure("fake-model", "connection refused", threshold=5)
    response = admin_client.post(URL, {"q": "document number 1", "k": "10"})
    text = page_text(response)
    assert "The embedding model is not answering" in text and "Try again in about" in text
    assert service.count() == 0
    limits.record_success("fake-model")
    assert admin_client.post(URL, {"q": "document number 1", "k": "10"}).context["hits"]


# Who may search


@pytest.mark.django_db
def test_staff_without_the_search_permission_are_refused(client, service):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"q": "fox"}).status_code == 403
    assert URL not in client.get(reverse("admin:index")).content.decode()
    assert service.count() == 0


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(URL, {"q": "fox"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_queue_operators_find_the_page_on_the_index_and_the_documents_list():
    operator = User.objects.create_user("operator", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Queue operators"))
    client = Client()
    client.force_login(operator)
    assert client.get(URL).status_code == 200
    index = client.get(reverse("admin:index")).content.decode()
    assert f'<a href="{URL}">Semantic search</a>' in index
    documents_list = client.get(reverse("admin:documents_sourcedocument_changelist")).content.decode()
    assert f'href="{URL}"' in documents_list


@pytest.mark.django_db(transaction=True)
def test_the_mode_switch_and_the_filters_narrow_the_results(admin_client, embedded_by_the_fake):
    docs = embedded_by_the_fake
    SourceDocument.objects.filter(pk=docs[2].pk).update(metadata={"lang": "de"})
    SourceDocument.objects.filter(pk__in=[docs[0].pk, docs[1].pk]).update(metadata={"lang": "en"})

    keyword = admin_client.post(URL, {"q": "number 2", "k": "5", "mode": "keyword"})
    assert [row["hit"].title for row in keyword.context["hits"]][0] == "Doc 2"
    assert '<span id="search-mode">keyword</span> search' in page_text(keyword)

    english = admin_client.post(URL, {"q": "document number 2", "k": "5", "metadata": '{"lang": "en"}'})
    assert sorted(row["hit"].title for row in english.context["hits"]) == ["Doc 0", "Doc 1"]
    assert '<details id="search-filters" open>' in english.content.decode()

    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    later = admin_client.post(URL, {"q": "document", "k": "5", "updated_after": tomorrow})
    assert later.context["hits"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field, value, says",
    [
        ("mode", "fuzzy", "Choose a mode: hybrid, vector, keyword."),
        ("metadata", "[1, 2]", "The filter must be a JSON object"),
        ("metadata", "{lang: en}", "The filter is not valid JSON"),
        ("updated_after", "yesterday", "must be a date or a date and time"),
        ("updated_before", "2026-02-30", "must be a date or a date and time"),
    ],
)
def test_bad_modes_and_filters_are_said_on_the_form_and_reach_no_model(
    admin_client, service, field, value, says
):
    response = admin_client.post(URL, {"q": "fox", "k": "10", field: value})
    assert response.status_code == 200
    error = re.search(rf'id="{field}-error">(.*?)</div>', response.content.decode(), re.S).group(1)
    assert says in error.replace("&quot;", '"').replace("&#x27;", "'")
    assert service.count() == 0


@pytest.mark.django_db
def test_a_time_range_that_is_empty_is_refused(admin_client, service):
    response = admin_client.post(
        URL, {"q": "fox", "k": "10", "updated_after": "2026-05-01", "updated_before": "2026-04-01"}
    )
    assert "is not before updated_before" in response.content.decode()
    assert service.count() == 0


@pytest.mark.django_db(transaction=True)
def test_each_result_shows_its_relevance_band_and_weak_matches_say_so(admin_client, embedded_by_the_fake):
    # The fake's vectors hash the text: the exact text is identical (strong), the others are
    # unrelated (near 0, weak).
    response = admin_client.post(URL, {"q": "document number 1", "k": "5"})
    rows = response.context["hits"]
    assert rows[0]["hit"].title == "Doc 1" and rows[0]["relevance"] == "strong"
    assert {row["relevance"] for row in rows[1:]} == {"weak"}
    page = response.content.decode()
    assert page.count('data-relevance="weak">weak match</span>') == len(rows) - 1
    assert 'data-relevance="strong">strong</span>' in page
    assert "Fused rank: the sum of 1 / (60 + rank)" in rows[0]["score_explained"]
    assert f'title="{rows[0]["score_explained"]}"' in page
