"""Bad search queries: empty, huge and binary queries get their reason from
the API (400 JSON), the admin's page (next to the box) and `manage.py search` (an error line),
never reach the model, and change nothing.

Already tested elsewhere: empty, blank, 10,001 and 100,000 characters, NUL, BEL and ESC on the
page (tests/admin/test_admin_search.py); empty, blank, 10,001 characters and bad `k` on the API
(tests/documents/test_search_api.py); empty and too long in `searching.search` (tests/documents/test_search.py).
"""

import re

import pytest
from django.core.management import CommandError, call_command

from documents.models import ApiToken
from tests import state

pytestmark = pytest.mark.django_db

API = "/api/search"
PAGE = "/admin/search/"
# What a search may write: the API's per-user request count.
SEARCH_WRITES = state.VISIT_TABLES | {"search_rate_windows", "api_tokens"}

# Raw query strings, as a client would put them on the wire.
BINARY_QUERIES = {
    "bytes that are not UTF-8": ("q=%FF%FE%FD", "not valid UTF-8 text: character 1"),
    "Latin-1 bytes": ("q=caf%E9", "not valid UTF-8 text: character 4"),
    "control characters": ("q=%01%02%03", "control character (U+0001) at position 1"),
    "a terminal escape": ("q=fox%1B%5B31m", "control character (U+001B) at position 4"),
    "DEL": ("q=fox%7F", "control character (U+007F) at position 4"),
    "NUL in the middle": ("q=fox%00dog", "NUL byte"),
    "a million characters": ("q=" + "a" * 1_000_000, "1,000,000 characters; the most is 10,000"),
    "only line breaks and tabs": ("q=%0A%0D%09", "empty"),
}


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_search_caches):
    pass


@pytest.fixture
def token(django_user_model):
    return ApiToken.issue(django_user_model.objects.create_user("rag-service"), "tests")[1]


@pytest.mark.parametrize("case", BINARY_QUERIES, ids=list(BINARY_QUERIES))
def test_the_api_refuses_binary_and_huge_queries_with_the_reason(client, token, tei_search_service, case):
    query, says = BINARY_QUERIES[case]
    before = state.fingerprint(exclude=SEARCH_WRITES)
    response = client.get(f"{API}?{query}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert tei_search_service.count() == 0
    assert state.changed_tables(before, state.fingerprint(exclude=SEARCH_WRITES)) == []


@pytest.mark.parametrize("case", BINARY_QUERIES, ids=list(BINARY_QUERIES))
def test_the_search_page_refuses_them_next_to_the_box(admin_client, tei_search_service, case):
    query, says = BINARY_QUERIES[case]
    if case == "NUL in the middle":
        says = "Null characters are not allowed"  # Django's own field check comes first
    if case == "only line breaks and tabs":
        says = "Type a few words to search for."
    before = state.fingerprint()
    response = admin_client.generic(
        "POST", PAGE, f"{query}&k=10".encode(), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    error = re.search(r'id="query-error">(.*?)</div>', response.content.decode(), re.S)
    assert error and says in error.group(1).replace("&#x27;", "'"), error
    assert tei_search_service.count() == 0
    assert state.changed_tables(before, state.fingerprint()) == []


@pytest.mark.parametrize(
    "query, says",
    [
        (b"caf\xe9".decode("utf-8", "surrogateescape"), "not valid UTF-8 text: character 4"),  # argv bytes
        ("\x1b[2J", "control character (U+001B) at position 1"),
        ("", "empty"),
        ("x" * 10_001, "10,001 characters"),
    ],
)
def test_the_search_command_says_why_and_exits_with_an_error(tei_search_service, query, says):
    with pytest.raises(CommandError, match=re.escape(says)):
        call_command("search", query)
    assert tei_search_service.count() == 0


def test_a_post_to_the_api_is_refused(client, token):
    response = client.post(API, {"q": "fox"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405


@pytest.mark.django_db(transaction=True)  # a real worker embeds the document first
def test_a_pasted_paragraph_with_tabs_and_line_breaks_is_searched(
    admin_client, tei_search_service, seeded_config
):
    """Whitespace control characters are what a paste carries: allowed."""
    from documents.models import SourceDocument
    from documents.providers.factory import get_provider
    from queue_admin.worker import QueueWorker

    SourceDocument.objects.create(content="a paragraph about foxes")

    with QueueWorker(get_provider(), name="search-setup") as worker:
        worker.process_one_batch()
    response = admin_client.post(PAGE, {"q": "first line\n\tsecond line\r\n", "k": "10"})
    assert 'id="query-error"' not in response.content.decode()
    assert tei_search_service.count() == 2  # the document, then the query
