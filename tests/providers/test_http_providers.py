"""HTTP embedding providers against a real fake server on 127.0.0.1 (tests/fault_server.py).

Nothing here mocks httpx: every fault is a real HTTP exchange, and the server counts the
requests it received, which is how "retried" and "not retried" are asserted. No database.
"""

import email.utils
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from documents.providers.base import EmbeddingError
from documents.providers.http import (
    HttpJsonClient,
    HttpOptions,
    close_shared_clients,
    parse_retry_after,
    shared_client,
)
from documents.providers.openai import OpenAIEmbeddingProvider
from documents.providers.tei import TEIEmbeddingProvider
from documents.providers.tokens import distribute_total, estimate_token_counts
from tests import secrets
from tests.fault_server import OPENAI_PATH, TEI_PATH, FakeEmbedder, Fault, fake_vector
from tests.helpers import ROOT

API_KEY = secrets.OPENAI_API_KEY
TEXTS = ["the quick brown fox", "jumps over", "the lazy dog, twice over and again"]
DIMS = 8
# Short waits so the whole file runs in seconds; the shape of the policy is what is tested.
FAST = HttpOptions(
    timeout_seconds=2.0,
    connect_timeout_seconds=1.0,
    retry_wait_multiplier_seconds=0.01,
    max_retry_wait_seconds=0.02,
)


@pytest.fixture(autouse=True)
def fresh_clients():
    yield
    close_shared_clients()


@pytest.fixture
def openai(fake_embedder):
    return OpenAIEmbeddingProvider(
        fake_embedder.openai_url,
        API_KEY,
        "fake-embedder-model",
        DIMS,
        send_dimensions=True,
        http_options=FAST,
    )


@pytest.fixture
def tei(fake_embedder):
    return TEIEmbeddingProvider(fake_embedder.url, "fake/embedder", DIMS, http_options=FAST)


def expected_vectors(texts, dims=DIMS):
    return np.stack([fake_vector(text, dims) for text in texts])


def fail(provider, texts=TEXTS) -> EmbeddingError:
    with pytest.raises(EmbeddingError) as caught:
        provider.embed(texts)
    return caught.value


# --- Requests and answers that work --------------------------------------------------------------


def test_openai_sends_model_input_and_dimensions_with_the_key_as_bearer(openai, fake_embedder):
    result = openai.embed(TEXTS)

    assert result.vectors.dtype == np.float32 and result.vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(result.vectors, expected_vectors(TEXTS), rtol=1e-6)
    (request,) = fake_embedder.requests
    assert request.path == OPENAI_PATH
    assert request.json == {
        "model": "fake-embedder-model",
        "input": TEXTS,
        "encoding_format": "base64",  # vectors as float32 bytes: see the base64 tests below
        "dimensions": DIMS,
    }
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert openai.model_id == "fake-embedder-model@8d"


def test_openai_without_send_dimensions_leaves_the_field_out_and_the_model_id_plain(fake_embedder):
    provider = OpenAIEmbeddingProvider(fake_embedder.openai_url, None, "m", DIMS, http_options=FAST)
    provider.embed(["a"])
    (request,) = fake_embedder.requests
    assert "dimensions" not in request.json
    assert "Authorization" not in request.headers
    assert provider.model_id == "m"


def test_openai_vectors_are_ordered_by_index_not_by_list_position(openai, fake_embedder):
    fake_embedder.script(Fault(reverse=True))
    np.testing.assert_allclose(openai.embed(TEXTS).vectors, expected_vectors(TEXTS), rtol=1e-6)


def test_openai_usage_total_is_shared_out_by_estimated_length(openai, fake_embedder):
    result = openai.embed(TEXTS)
    service_total = sum(len(text.split()) + 1 for text in TEXTS)  # what the fake reports
    assert sum(result.token_counts) == service_total
    assert result.token_counts[2] == max(result.token_counts)  # the longest text gets the most

    fake_embedder.script(Fault(no_usage=True))
    assert openai.embed(TEXTS).token_counts == estimate_token_counts(TEXTS)


def test_tei_sends_inputs_truncate_normalize_and_reads_a_list_of_vectors(tei, fake_embedder):
    result = tei.embed(TEXTS)
    np.testing.assert_allclose(result.vectors, expected_vectors(TEXTS), rtol=1e-6)
    (request,) = fake_embedder.requests
    assert request.path == TEI_PATH
    assert request.json == {"inputs": TEXTS, "truncate": True, "normalize": True}
    assert result.token_counts == estimate_token_counts(TEXTS)


def test_empty_input_sends_nothing(openai, tei, fake_embedder):
    assert openai.embed([]).vectors.shape == (0, DIMS)
    assert tei.embed([]).vectors.shape == (0, DIMS)
    assert fake_embedder.count() == 0


def test_more_texts_than_max_batch_size_is_a_caller_bug(fake_embedder):
    provider = TEIEmbeddingProvider(fake_embedder.url, "m", DIMS, max_batch_size=2, http_options=FAST)
    with pytest.raises(ValueError, match="at most 2 per call"):
        provider.embed(TEXTS)
    assert fake_embedder.count() == 0


def test_token_counts_are_estimates_of_four_characters_per_token(tei):
    assert tei.count_tokens(["", "abc", "abcd" * 10, "x" * 10_000]) == [0, 1, 10, 2500]
    assert distribute_total(10, [1, 1, 1]) == [4, 3, 3]
    assert distribute_total(0, [5, 0]) == [0, 0]
    assert sum(distribute_total(97, [3, 50, 11, 0, 7])) == 97


def test_one_pooled_client_per_base_url_and_key(fake_embedder):
    a = OpenAIEmbeddingProvider(fake_embedder.openai_url, API_KEY, "m", DIMS, http_options=FAST)
    b = OpenAIEmbeddingProvider(fake_embedder.openai_url, API_KEY, "m", DIMS, http_options=FAST)
    a.embed(["one"])
    b.embed(["two"])
    assert shared_client(fake_embedder.openai_url, API_KEY) is shared_client(
        fake_embedder.openai_url, API_KEY
    )
    assert shared_client(fake_embedder.openai_url, API_KEY) is not shared_client(
        fake_embedder.openai_url, "other"
    )


FORK_CHECK = """
import os, sys
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedding_site.settings")
django.setup()
from documents.providers.http import shared_client
from documents.providers.openai import OpenAIEmbeddingProvider

url, key, dims = sys.argv[1], sys.argv[2], int(sys.argv[3])
provider = OpenAIEmbeddingProvider(url, key, "fake-embedder-model", dims)
provider.embed(["parent"])
parent_client = shared_client(url, key)
pid = os.fork()
if pid == 0:
    ok = shared_client(url, key) is not parent_client and provider.embed(["child"]).vectors.shape == (1, dims)
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the child shared the parent's client or failed"
assert provider.embed(["parent again"]).vectors.shape == (1, dims)
"""


def test_a_forked_worker_dials_its_own_connections(fake_embedder):
    # django-q2 forks its workers; sharing the parent's pooled sockets would interleave two
    # processes' requests on one connection. Checked in a fresh single-threaded process:
    # forking this multi-threaded test process could deadlock on a lock held by another thread.
    result = subprocess.run(
        [sys.executable, "-c", FORK_CHECK, fake_embedder.openai_url, API_KEY, str(DIMS)],
        cwd=ROOT, env=dict(os.environ, DEBUG="1"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert fake_embedder.count() == 3


# --- Transient: retried here, then raised as transient ------------------------------------------

TRANSIENT_FAULTS = {
    "500": (Fault(status=500), 'HTTP 500 Internal Server Error: {"error"'),
    "502": (Fault(status=502), "HTTP 502 Bad Gateway"),
    "503": (Fault(status=503), "HTTP 503 Service Unavailable"),
    "504": (Fault(status=504), "HTTP 504 Gateway Timeout"),
    "408": (Fault(status=408), "HTTP 408 Request Timeout"),
    "dropped connection": (Fault(close_connection=True), "connection failed"),
    "no answer in time": (Fault(sleep=3.0), "timed out waiting for the response"),
}


@pytest.mark.parametrize("case", TRANSIENT_FAULTS, ids=list(TRANSIENT_FAULTS))
def test_transient_faults_are_retried_three_times_then_raised_as_transient(case, fake_embedder):
    fault, message = TRANSIENT_FAULTS[case]
    options = HttpOptions(
        timeout_seconds=0.3, retry_wait_multiplier_seconds=0.01, max_retry_wait_seconds=0.02
    )
    provider = OpenAIEmbeddingProvider(fake_embedder.openai_url, API_KEY, "m", DIMS, http_options=options)
    fake_embedder.script(fault, fault, fault)

    error = fail(provider)

    assert error.kind == "transient"
    assert message in str(error) and "gave up after 3 attempts" in str(error)
    assert f"POST {fake_embedder.openai_url}/embeddings" in str(error)
    assert fake_embedder.count() == 3


def test_a_transient_fault_that_clears_is_retried_to_success(openai, fake_embedder, caplog):
    fake_embedder.script(Fault(status=503), Fault(close_connection=True))
    with caplog.at_level(logging.WARNING, logger="documents.providers.http"):
        result = openai.embed(TEXTS)
    np.testing.assert_allclose(result.vectors, expected_vectors(TEXTS), rtol=1e-6)
    assert fake_embedder.count() == 3
    assert "attempt 1 of 3 failed" in caplog.text and "attempt 2 of 3 failed" in caplog.text


def test_connection_refused_is_transient_and_retried(refused_url):
    provider = TEIEmbeddingProvider(refused_url, "m", DIMS, http_options=FAST)
    error = fail(provider)
    assert error.kind == "transient"
    assert "could not connect" in str(error) and "gave up after 3 attempts" in str(error)


def test_slow_loris_is_cut_off_at_the_deadline(fake_embedder):
    # One byte every 50 ms never trips a 300 ms read timeout; only the total deadline stops it.
    options = HttpOptions(timeout_seconds=0.3, max_attempts=1)
    provider = OpenAIEmbeddingProvider(fake_embedder.openai_url, None, "m", DIMS, http_options=options)
    fake_embedder.script(Fault(trickle_interval=0.05))
    started = time.monotonic()
    error = fail(provider)
    assert error.kind == "transient"
    assert "deadline exceeded" in str(error) and "sending too slowly" in str(error)
    assert time.monotonic() - started < 1.0


def test_read_timeout_ends_the_request_long_before_the_server_answers(fake_embedder):
    provider = TEIEmbeddingProvider(
        fake_embedder.url, "m", DIMS, http_options=HttpOptions(0.2, max_attempts=1)
    )
    fake_embedder.script(Fault(sleep=5))
    started = time.monotonic()
    error = fail(provider)
    assert error.kind == "transient" and "timed out" in str(error)
    assert time.monotonic() - started < 1.0


# --- Rate limited: raised at once with Retry-After ----------------------------------------------


def http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "HTTP-DATE IN 30 S"}, 30.0),
        ({"Retry-After": "7", "retry-after-ms": "1500"}, 1.5),
        ({}, None),
    ],
    ids=["seconds", "http-date", "retry-after-ms", "none"],
)
def test_429_is_rate_limited_with_retry_after_and_not_retried(headers, expected, openai, fake_embedder):
    if headers.get("Retry-After") == "HTTP-DATE IN 30 S":  # made now: collection ran seconds ago
        headers = {"Retry-After": http_date(30)}
    fake_embedder.script(Fault(status=429, headers=headers))
    error = fail(openai)
    assert error.kind == "rate_limited"
    assert "HTTP 429" in str(error)
    if expected is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(expected, abs=2)
    assert fake_embedder.count() == 1


def test_tei_overloaded_429_is_rate_limited(tei, fake_embedder):
    fake_embedder.script(
        Fault(status=429, body='{"error": "Model is overloaded", "error_type": "overloaded"}')
    )
    error = fail(tei)
    assert error.kind == "rate_limited" and "Model is overloaded" in str(error)
    assert fake_embedder.count() == 1


def test_retry_after_parsing():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    parse = lambda **h: parse_retry_after(httpx.Headers(h), now=now)  # noqa: E731
    assert parse(**{"retry-after": "Wed, 01 Jan 2025 12:01:00 GMT"}) == 60
    assert parse(**{"retry-after": "Tue, 31 Dec 2024 12:00:00 GMT"}) == 0  # in the past
    assert parse(**{"retry-after": "2.5"}) == 2.5
    assert parse(**{"retry-after": "soon"}) is None
    assert parse(**{"retry-after": "-3"}) == 0


# --- Permanent: raised at once, with what came back ---------------------------------------------

PERMANENT_STATUSES = [
    (400, "HTTP 400 Bad Request"),
    (401, "HTTP 401 Unauthorized"),
    (404, "HTTP 404 Not Found"),
    (413, "HTTP 413 Request Entity Too Large"),
    (422, "HTTP 422 Unprocessable Entity"),
    (501, "HTTP 501 Not Implemented"),
]


@pytest.mark.parametrize("status, message", PERMANENT_STATUSES, ids=[str(s) for s, _ in PERMANENT_STATUSES])
@pytest.mark.parametrize("which", ["openai", "tei"])
def test_other_4xx_are_permanent_not_retried_and_quote_the_body(
    status, message, which, request, fake_embedder
):
    provider = request.getfixturevalue(which)
    fake_embedder.script(Fault(status=status))
    error = fail(provider)
    assert error.kind == "permanent"
    assert message in str(error) and "fake embedder fault" in str(error)
    assert fake_embedder.count() == 1


def test_a_redirect_is_permanent_and_says_where_to(openai, fake_embedder):
    fake_embedder.script(Fault(status=307, headers={"Location": "https://elsewhere.example/v1/embeddings"}))
    error = fail(openai)
    assert error.kind == "permanent" and "redirected to https://elsewhere.example" in str(error)
    assert fake_embedder.count() == 1


def test_html_page_with_200_is_transient_and_shows_what_came_back(openai, fake_embedder):
    """A body that is not JSON says nothing about the texts (a proxy's page, an answer cut
    short): retried, and a server that keeps sending it is caught by the queue's retry limit and
    the circuit breaker, not by dead-lettering healthy documents (the fault-storm suite)."""
    page = (
        "<html><head><title>Sign in</title></head><body>" + "Please sign in to the proxy. " * 40 + "</body>"
    )
    fake_embedder.script(*[Fault(body=page, content_type="text/html; charset=utf-8")] * 3)
    error = fail(openai)
    assert error.kind == "transient"
    assert "HTTP 200 but the body is not JSON (text/html; charset=utf-8" in str(error)
    assert "<html><head><title>Sign in</title>" in str(error)
    assert len(str(error)) < 600  # an excerpt, not the page
    assert fake_embedder.count() == 3


def test_malformed_json_is_transient_and_a_good_answer_next_time_is_used(tei, fake_embedder):
    fake_embedder.script(Fault(body="[[0.1, 0.2], [0.3,"))
    assert tei.embed(TEXTS).vectors.shape == (len(TEXTS), DIMS)
    assert fake_embedder.count() == 2

    fake_embedder.script(*[Fault(body="[[0.1, 0.2], [0.3,")] * 3)
    error = fail(tei)
    assert error.kind == "transient"
    assert "not JSON (application/json" in str(error) and "[[0.1, 0.2], [0.3," in str(error)


@pytest.mark.parametrize("which", ["openai", "tei"])
def test_wrong_dimensions_are_permanent(which, request, fake_embedder):
    fake_embedder.script(Fault(dimensions=5))
    error = fail(request.getfixturevalue(which))
    assert error.kind == "permanent" and "expected 8 dimensions, got 5" in str(error)


@pytest.mark.parametrize("which", ["openai", "tei"])
def test_nan_in_a_vector_is_permanent(which, request, fake_embedder):
    fake_embedder.script(Fault(nan=True))
    error = fail(request.getfixturevalue(which))
    assert error.kind == "permanent"
    assert "1 of 3 vectors are not finite (1 NaN and 0 Inf values; rows 0)" in str(error)


def test_too_few_vectors_are_permanent(openai, tei, fake_embedder):
    fake_embedder.script(Fault(drop_vectors=1), Fault(drop_vectors=1))
    assert "expected 3 vectors, got 2 (missing index 2)" in str(fail(openai))
    assert "expected 3 vectors, got 2" in str(fail(tei))
    assert fake_embedder.count() == 2


OPENAI_BAD_SHAPES = {
    "no data": ('{"object": "list"}', "response has no 'data' list (keys: object)"),
    "error object with 200": (
        '{"error": {"message": "quota exceeded"}}',
        "no 'data' list but an error: quota",
    ),
    "a list": ("[]", "expected a JSON object with a 'data' list, got list"),
    "item not an object": ('{"data": [1]}', "data[0] is int, not an object"),
    "no index": (
        '{"data": [{"embedding": [1.0]}]}',
        "data[0].index is None; expected a whole number from 0 to 0",
    ),
    "base64 of 3 bytes": (
        '{"data": [{"index": 0, "embedding": "AAAA"}]}',
        "data[0].embedding holds 3 bytes, not whole float32 numbers",
    ),
    "not base64": (
        '{"data": [{"index": 0, "embedding": "**not base64**"}]}',
        "data[0].embedding is not valid base64",
    ),
    "string in embedding": ('{"data": [{"index": 0, "embedding": [1.0, "x"]}]}', "holds a string, not only"),
    "boolean in embedding": ('{"data": [{"index": 0, "embedding": [true]}]}', "holds a boolean, not only"),
    "null embedding": (
        '{"data": [{"index": 0, "embedding": null}]}',
        "data[0].embedding is null, not a list",
    ),
}


@pytest.mark.parametrize("case", OPENAI_BAD_SHAPES, ids=list(OPENAI_BAD_SHAPES))
def test_openai_malformed_shapes_are_permanent_with_a_precise_message(case, openai, fake_embedder):
    body, message = OPENAI_BAD_SHAPES[case]
    fake_embedder.script(Fault(body=body))
    error = fail(openai, ["one text"])
    assert error.kind == "permanent"
    assert message in str(error)


# --- base64 vectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("server_does", ["answer", "ignore"])
def test_openai_asks_for_base64_and_reads_it_or_the_floats_a_server_sends_anyway(server_does):
    """Bit for bit the vectors the float path gives: the same float32 numbers either way."""
    with FakeEmbedder(dimensions=DIMS, base64=server_does) as server:
        provider = OpenAIEmbeddingProvider(server.openai_url, API_KEY, "m", DIMS, http_options=FAST)
        result = provider.embed(TEXTS)
        (request,) = server.requests
    assert request.json["encoding_format"] == "base64"
    assert result.vectors.dtype == np.float32 and result.vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(result.vectors, expected_vectors(TEXTS))
    assert provider.encoding_format == "base64"  # a server that ignores it costs nothing


def test_openai_asks_again_with_floats_when_a_server_refuses_base64_and_remembers(caplog):
    with FakeEmbedder(dimensions=DIMS, base64="reject") as server:
        provider = OpenAIEmbeddingProvider(server.openai_url, API_KEY, "m", DIMS, http_options=FAST)
        first = provider.embed(TEXTS)
        second = provider.embed(TEXTS[:1])
        formats = [request.json["encoding_format"] for request in server.requests]
    assert formats == ["base64", "float", "float"]
    np.testing.assert_array_equal(first.vectors, expected_vectors(TEXTS))
    np.testing.assert_array_equal(second.vectors, expected_vectors(TEXTS[:1]))
    assert "refuses base64 vectors" in caplog.text and "asking for floats from now on" in caplog.text


def test_openai_a_400_about_something_else_is_not_retried_as_floats(openai, fake_embedder):
    fake_embedder.script(Fault(status=400, body='{"error": {"message": "input too long"}}'))
    error = fail(openai, ["one text"])
    assert error.kind == "permanent" and "input too long" in str(error)
    assert fake_embedder.count(OPENAI_PATH) == 1 and openai.encoding_format == "base64"


def test_openai_base64_beside_something_else_names_the_bad_one(openai, fake_embedder):
    fake_embedder.script(
        Fault(body='{"data": [{"index": 0, "embedding": "AACAPw=="}, {"index": 1, "embedding": {}}]}')
    )
    assert "data[1].embedding is neither base64 text nor a list of numbers" in str(fail(openai, ["a", "b"]))


def test_openai_duplicate_index_is_permanent(openai, fake_embedder):
    fake_embedder.script(
        Fault(body='{"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [1]}]}')
    )
    assert "data[1].index 0 appears twice" in str(fail(openai, ["a", "b"]))


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"embeddings": []}', "expected a JSON list of vectors, got dict (keys: embeddings)"),
        ("[[1.0, 2.0], [1.0]]", "vectors have different lengths (1, 2)"),
    ],
)
def test_tei_malformed_shapes_are_permanent(body, message, tei, fake_embedder):
    fake_embedder.script(Fault(body=body))
    error = fail(tei, ["a", "b"])
    assert error.kind == "permanent" and message in str(error)


# --- Size cap --------------------------------------------------------------------------------------


def test_a_huge_body_is_cut_at_the_cap_without_holding_it(fake_embedder):
    options = HttpOptions(max_response_bytes=1024 * 1024, max_attempts=1)
    provider = TEIEmbeddingProvider(fake_embedder.url, "m", DIMS, http_options=options)
    fake_embedder.script(Fault(huge_bytes=200 * 1024 * 1024))  # 200 MiB, no Content-Length
    tracemalloc.start()
    try:
        error = fail(provider)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.kind == "permanent" and "response larger than 1 MiB; stopped reading" in str(error)
    assert peak < 8 * 1024 * 1024


def test_a_declared_huge_body_is_refused_unread(openai, fake_embedder):
    fake_embedder.script(Fault(huge_bytes=2 * 1024**3, declare_length=True))  # says 2 GiB
    started = time.monotonic()
    error = fail(openai)
    assert error.kind == "permanent"
    assert "response larger than 64 MiB (Content-Length 2048 MiB); refused unread" in str(error)
    assert time.monotonic() - started < 1.0


# --- The key stays secret --------------------------------------------------------------------------


def test_the_api_key_never_appears_in_errors_or_logs(openai, fake_embedder, caplog):
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    fake_embedder.script(
        Fault(status=503, echo_authorization=True), Fault(status=401, echo_authorization=True)
    )

    error = fail(openai)

    assert fake_embedder.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert error.kind == "permanent" and "you sent Bearer [redacted]" in str(error)
    assert API_KEY not in str(error) and API_KEY not in repr(error)
    assert "retrying" in caplog.text and "[redacted]" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(openai) and API_KEY not in repr(HttpJsonClient("http://x", API_KEY))


def test_the_cap_grows_to_fit_a_full_batch_of_large_vectors():
    assert HttpOptions().fit_batch(128, 1536).max_response_bytes == 64 * 1024 * 1024
    assert HttpOptions().fit_batch(2048, 3072).max_response_bytes == 2048 * 3072 * 48
