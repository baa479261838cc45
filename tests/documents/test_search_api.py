"""GET /api/search: authentication (session, API tokens made and revoked in the admin), the
per-user rate limit, parameter errors, a provider outage, and the query-embedding cache.

The provider is TEI pointed at the fake embedding service (tests/fault_server.py): fast, and
it counts the requests that reach it."""

import re

import pytest
from django.contrib.auth.models import User

from documents import search
from documents.models import ApiToken, SourceDocument
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin.worker import QueueWorker

URL = "/api/search"


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_search_caches):
    pass


@pytest.fixture
def service(tei_search_service):
    return tei_search_service


@pytest.fixture
def user(db):
    return User.objects.create_user("reader", password="not-used-here")


@pytest.fixture
def token(user):
    return ApiToken.issue(user, "RAG service")[1]


def bearer(plaintext):
    return {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}


def test_without_credentials_the_answer_is_401_json(client, db):
    response = client.get(URL, {"q": "fox"})
    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]
    assert "API token" in response.json()["error"]


@pytest.mark.parametrize("header", ["Bearer sidecar_wrong", "Token abc", "Bearer "])
def test_a_wrong_token_is_refused_even_with_a_session(client, user, service, header):
    client.force_login(user)
    response = client.get(URL, {"q": "fox"}, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401 and response.json()["error"]
    assert service.count() == 0


def test_a_logged_in_user_who_is_not_staff_can_search(client, user, service):
    client.force_login(user)
    response = client.get(URL, {"q": "fox"})
    assert response.status_code == 200
    assert response.json() == {
        "model": "fake-model", "mode": "hybrid", "text_config": "simple", "documents_not_covered": 0,
        "notices": [], "results": [],
    }  # fmt: skip


def test_only_the_hash_of_a_token_is_stored_and_use_is_recorded(client, user, token, service):
    row = ApiToken.objects.get(user=user)
    assert token not in row.token_hash and row.token_hash == ApiToken.hash_token(token)
    assert row.last_used_at is None
    assert client.get(URL, {"q": "fox"}, **bearer(token)).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_an_inactive_users_token_is_refused(client, user, token, service):
    User.objects.filter(pk=user.pk).update(is_active=False)
    response = client.get(URL, {"q": "fox"}, **bearer(token))
    assert response.status_code == 401 and "inactive" in response.json()["error"]


def test_admin_creates_a_token_shown_once_and_revokes_it(admin_client, user, service, client):
    response = admin_client.post(
        "/admin/documents/apitoken/add/", {"user": user.pk, "name": "notebook"}, follow=True
    )
    shown = re.search(r"sidecar_[A-Za-z0-9_-]{40,}", response.content.decode())
    assert shown, "the new token's plaintext is shown after creation"
    plaintext = shown.group(0)
    row = ApiToken.objects.get(name="notebook")
    assert row.user == user and row.token_hash == ApiToken.hash_token(plaintext)
    # Never again: not on the token's own page.
    assert plaintext not in admin_client.get(f"/admin/documents/apitoken/{row.pk}/change/").content.decode()
    assert client.get(URL, {"q": "fox"}, **bearer(plaintext)).status_code == 200

    admin_client.post("/admin/documents/apitoken/", {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None
    response = client.get(URL, {"q": "fox"}, **bearer(plaintext))
    assert response.status_code == 401 and "revoked" in response.json()["error"]


@pytest.mark.parametrize(
    "params, says",
    [({}, "empty"), ({"q": "   "}, "empty"), ({"q": "x" * 10_001}, "10,001 characters"),
     ({"q": "fox", "k": "ten"}, "whole number"), ({"q": "fox", "k": "2.5"}, "whole number"),
     ({"q": "fox", "k": "0"}, "between 1 and 100"), ({"q": "fox", "k": "101"}, "between 1 and 100"),
     ({"q": "fox", "k": "99999999999999999999"}, "between 1 and 100"),
     ({"q": "fox", "k": "10000"}, "between 1 and 100"),
     ({"q": "fox", "mode": "fuzzy"}, "mode must be one of hybrid, vector, keyword, not 'fuzzy'"),
     ({"q": "fox", "mode": "HYBRID"}, "mode must be one of"),
     ({"q": "fox", "filter": "[1, 2]"}, "The filter must be a JSON object"),
     ({"q": "fox", "filter": '"lang"'}, "The filter must be a JSON object"),
     ({"q": "fox", "filter": "{lang: en}"}, "The filter is not valid JSON"),
     ({"q": "fox", "filter": '{"x": NaN}'}, "The filter is not valid JSON (NaN is not JSON"),
     ({"q": "fox", "filter": '{"x": "\\u0000"}'}, "NUL byte"),
     ({"q": "fox", "filter": '{"x": "\\ud800"}'}, "not valid UTF-8"),
     ({"q": "fox", "filter": "[" * 1500 + "]" * 1500}, "3,000 characters; the most is 2,000"),
     ({"q": "fox", "filter": "[" * 990 + "]" * 990}, "The filter is not valid JSON (maximum recursion"),
     ({"q": "fox", "source": "nope"}, "no source named 'nope'"),
     ({"q": "fox", "updated_after": "yesterday"}, "updated_after must be a date or a date and time"),
     ({"q": "fox", "updated_before": "2026-02-30"}, "updated_before must be a date"),
     ({"q": "fox", "updated_after": "2026-02-01", "updated_before": "2026-01-01"}, "is not before updated_before")],
)  # fmt: skip
def test_bad_parameters_get_a_400_with_the_reason(client, token, service, params, says):
    response = client.get(URL, params, **bearer(token))
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert service.count() == 0


def test_the_rate_limit_is_per_user_and_answers_429_with_retry_after(
    client, settings, user, token, service, sql
):
    settings.SEARCH_RATE_LIMIT_PER_MINUTE = 2
    assert [client.get(URL, {"q": "fox"}, **bearer(token)).status_code for _ in range(2)] == [200, 200]
    refused = client.get(URL, {"q": "fox"}, **bearer(token))
    assert refused.status_code == 429 and "2 a minute" in refused.json()["error"]
    assert 1 <= int(refused["Retry-After"]) <= 60

    # Another user has their own allowance, by session too.
    other = User.objects.create_user("other")
    client.force_login(other)
    assert client.get(URL, {"q": "fox"}).status_code == 200

    # A minute later the first user's window starts again.
    sql("UPDATE search_rate_windows SET window_start = window_start - interval '61 seconds' WHERE user_id = %s",
        [user.pk])  # fmt: skip
    assert client.get(URL, {"q": "fox"}, **bearer(token)).status_code == 200


def test_a_provider_that_refuses_connections_gives_503_not_500(client, settings, token, refused_url):
    settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "tei", "fake-model"
    settings.EMBEDDING_BASE_URL = refused_url
    settings.EMBEDDING_HTTP_ATTEMPTS = 1
    response = client.get(URL, {"q": "fox"}, **bearer(token))
    assert response.status_code == 503
    error = response.json()["error"]
    assert "unavailable" in error and refused_url not in error  # the provider's address stays in the logs


def test_a_repeated_query_is_embedded_once(client, token, service):
    for k in ("3", "5"):
        assert client.get(URL, {"q": "what is a fox", "k": k}, **bearer(token)).status_code == 200
    assert service.count() == 1
    client.get(URL, {"q": "what is a dog"}, **bearer(token))
    assert service.count() == 2


def test_the_cache_keeps_models_apart(service, seeded_config):
    same_dimensions = service.dimensions
    first = search.embed_query(TEIEmbeddingProvider(service.url, "model-a", same_dimensions), "fox")
    second = search.embed_query(TEIEmbeddingProvider(service.url, "model-b", same_dimensions), "fox")
    assert service.count() == 2 and first.shape == second.shape


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_results_carry_id_title_score_snippet_and_model(client, service, token):
    docs = [SourceDocument.objects.create(title=f"Doc {n}", content=f"document number {n}") for n in range(3)]
    with QueueWorker(
        TEIEmbeddingProvider(service.url, "fake-model", service.dimensions), name="test"
    ) as worker:
        worker.run()
    # The fake's vectors are a hash of the text: the query equal to a document's text finds it.
    response = client.get(URL, {"q": "document number 1", "k": "2"}, **bearer(token))
    body = response.json()
    assert (
        response.status_code == 200 and body["model"] == "fake-model" and body["documents_not_covered"] == 0
    )
    assert len(body["results"]) == 2
    best = body["results"][0]
    assert best.pop("keyword_score") > 0  # ts_rank: its own scale
    # First in both lists: 1/61 + 1/61 by reciprocal rank fusion (k = 60).
    assert best == {
        "document_id": str(docs[1].id), "title": "Doc 1", "score": pytest.approx(2 / 61, abs=1e-6),
        "snippet": "document number 1", "model": "fake-model",
        "source": "documents", "source_key": str(docs[1].id),
        "page": None, "heading": "",  # a plain-text document has no page or heading to cite
        "chunk_index": 0, "vector_score": pytest.approx(1.0, abs=1e-3),
        "snippet_parts": [{"text": "document", "match": True}, {"text": " ", "match": False},
                          {"text": "number", "match": True}, {"text": " ", "match": False},
                          {"text": "1", "match": True}],
    }  # fmt: skip
    # The other document matches no keyword ("1" is missing): it has a vector score only.
    assert body["results"][1]["keyword_score"] is None and body["results"][1]["vector_score"] is not None


def test_search_fails_fast_while_the_providers_breaker_is_open(client, token, service, seeded_config):
    """Workers opened the breaker: the API answers 503 at once, without calling the provider."""
    from queue_admin import limits

    for _ in range(5):
        limits.record_failure("fake-model", "connection refused", threshold=5)
    response = client.get(URL, {"q": "anything"}, **bearer(token))
    assert response.status_code == 503 and "unavailable" in response.json()["error"]
    assert service.count() == 0

    limits.record_success("fake-model")  # the breaker closed again: searches reach the provider
    assert client.get(URL, {"q": "anything"}, **bearer(token)).status_code == 200
    assert service.count() == 1


# Bytes that are not UTF-8 in any parameter: Django decodes them to U+FFFD, which is refused.
@pytest.mark.parametrize(
    "query_string, says",
    [
        ("q=%FF", "The query is not valid UTF-8"),
        ("q=fox&filter=%7B%22a%22%3A%22%FF%22%7D", "The filter is not valid UTF-8"),
    ],
)
def test_bytes_that_are_not_utf8_get_a_400(client, token, service, query_string, says):
    response = client.get(f"{URL}?{query_string}", **bearer(token))
    assert response.status_code == 400 and says in response.json()["error"]
    assert service.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_mode_filter_and_times_reach_the_search(client, service, token):
    SourceDocument.objects.create(
        title="en", content="quarterly report", metadata={"lang": "en", "tenant": 42}
    )
    SourceDocument.objects.create(
        title="de", content="quarterly report", metadata={"lang": "de", "tenant": 42}
    )
    with QueueWorker(
        TEIEmbeddingProvider(service.url, "fake-model", service.dimensions), name="test"
    ) as worker:
        worker.run()
    service.reset()

    def found(**params):
        response = client.get(URL, {"q": "quarterly report", **params}, **bearer(token))
        assert response.status_code == 200, response.content
        return response.json()

    body = found(mode="keyword", filter='{"lang": "en", "tenant": 42}')
    assert body["mode"] == "keyword" and [hit["title"] for hit in body["results"]] == ["en"]
    assert service.count() == 0  # keyword mode: the query is not embedded
    assert sorted(hit["title"] for hit in found(filter=" ")["results"]) == ["de", "en"]  # blank: no filter
    assert found(mode="vector", updated_before="2000-01-01")["results"] == []
    assert len(found(updated_after="2000-01-01T00:00:00+02:00", source="documents")["results"]) == 2
