"""Fetching one page for a URL source (documents/sources/web.py): validators, statuses,
redirects, and the size and time limits, against a real web server on loopback
(tests/web_server.py). The server-side request forgery guard has its own file,
test_web_ssrf.py."""

import io
import socket
import time

import pytest

from documents.sources.web import FetchError, Limits, check_url, fetch, make_client
from tests.helpers import free_port
from tests.web_server import PAGE_BODY, PAGE_ETAG, PAGE_LAST_MODIFIED

# The site is on loopback, which the guard refuses unless the operator allows the host.
LOCAL = Limits(allowed_hosts=frozenset({"localhost"}))


def fetch_error(url, limits=LOCAL, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, io.BytesIO(), limits=limits, **kwargs)
    return caught.value


def test_a_page_arrives_with_its_validators(web_site):
    dest = io.BytesIO()
    fetched = fetch(web_site.url("/page"), dest, limits=LOCAL)

    assert fetched.status == 200
    assert fetched.url == web_site.url("/page")
    assert fetched.content_type == "text/html; charset=utf-8"
    assert (fetched.etag, fetched.last_modified) == (PAGE_ETAG, PAGE_LAST_MODIFIED)
    assert fetched.size == len(PAGE_BODY)
    assert dest.getvalue() == PAGE_BODY
    [request] = web_site.requests
    assert request.headers["user-agent"] == "Sidecar/0.1 (+document source)"
    assert "if-none-match" not in request.headers


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_an_unchanged_page_is_a_304_and_nothing_is_written(web_site, validator):
    dest = io.BytesIO()
    given = {"etag": PAGE_ETAG} if validator == "etag" else {"last_modified": PAGE_LAST_MODIFIED}

    fetched = fetch(web_site.url("/page"), dest, limits=LOCAL, **given)

    assert (fetched.status, fetched.size, dest.getvalue()) == (304, 0, b"")
    sent = web_site.requests[0].headers
    assert sent.get("if-none-match", "") == given.get("etag", "")
    assert sent.get("if-modified-since", "") == given.get("last_modified", "")


def test_a_gzip_encoded_body_is_written_decoded(web_site):
    dest = io.BytesIO()
    fetched = fetch(web_site.url("/gzip-page"), dest, limits=LOCAL)
    assert dest.getvalue() == PAGE_BODY
    assert fetched.size == len(PAGE_BODY)


def test_cookies_are_not_kept_between_pages(web_site):
    # Requests go to addresses, so a kept cookie would reach every other site on the same IP.
    with make_client() as client:
        fetch(web_site.url("/set-cookie"), io.BytesIO(), limits=LOCAL, client=client)
        fetch(web_site.url("/page"), io.BytesIO(), limits=LOCAL, client=client)
    assert "cookie" not in web_site.requests[1].headers


@pytest.mark.parametrize(
    ("status", "reason", "permanent"),
    [
        (404, "HTTP 404 Not Found", True),
        (410, "HTTP 410 Gone", True),
        (403, "HTTP 403 Forbidden", True),
        (408, "HTTP 408 Request Timeout", False),
        (429, "HTTP 429 Too Many Requests (Retry-After 120)", False),
        (500, "HTTP 500 Internal Server Error", False),
        (503, "HTTP 503 Service Unavailable", False),
    ],
)
def test_an_error_status_says_whether_it_is_permanent(web_site, status, reason, permanent):
    error = fetch_error(web_site.url(f"/status/{status}"))
    assert (str(error), error.permanent) == (reason, permanent)


# --- Redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_followed_to_the_final_url(web_site, status):
    dest = io.BytesIO()
    fetched = fetch(web_site.url(f"/redirect?to=/page&status={status}"), dest, limits=LOCAL)

    assert (fetched.status, fetched.url, dest.getvalue()) == (200, web_site.url("/page"), PAGE_BODY)
    assert web_site.paths() == [f"/redirect?to=/page&status={status}", "/page"]
    # Each hop names its own host: the request went to an address, the Host header keeps the name.
    assert {r.headers["host"] for r in web_site.requests} == {f"localhost:{web_site.port}"}


def test_five_redirects_are_followed_and_a_sixth_is_refused(web_site):
    assert fetch(web_site.url("/chain/5"), io.BytesIO(), limits=LOCAL).url == web_site.url("/chain/0")

    web_site.requests.clear()
    error = fetch_error(web_site.url("/chain/6"))
    assert (str(error), error.permanent) == ("too many redirects (more than 5; a redirect loop?)", True)
    assert len(web_site.requests) == 6  # the first request and five redirects; the sixth not followed


def test_a_redirect_loop_is_named(web_site):
    error = fetch_error(web_site.url("/loop/a"))
    assert (str(error), error.permanent) == (f"redirect loop: {web_site.url('/loop/a')}", True)
    assert web_site.paths() == ["/loop/a", "/loop/b"]


def test_a_redirect_to_something_other_than_the_web_is_refused(web_site):
    error = fetch_error(web_site.url("/redirect?to=file:///etc/passwd"))
    assert (
        str(error)
        == "redirected to file:///etc/passwd: not a web address: file: URLs are not fetched (only http and https)"
    )
    assert error.permanent


# --- Size ------------------------------------------------------------------------------------

SMALL = Limits(max_bytes=100_000, allowed_hosts=frozenset({"localhost"}))


def test_a_body_of_exactly_the_limit_is_fetched(web_site):
    fetched = fetch(web_site.url("/big?bytes=100000"), io.BytesIO(), limits=SMALL)
    assert fetched.size == 100_000


def test_a_declared_length_over_the_limit_is_refused_unread(web_site):
    dest = io.BytesIO()
    with pytest.raises(FetchError) as caught:
        fetch(web_site.url("/big?bytes=3000000"), dest, limits=SMALL)
    assert str(caught.value) == "too large: over the 100000 bytes limit (Content-Length 2.9 MB)"
    assert caught.value.permanent
    assert dest.getvalue() == b""


def test_an_undeclared_body_is_cut_off_at_the_limit(web_site):
    dest = io.BytesIO()
    with pytest.raises(FetchError) as caught:
        fetch(web_site.url("/big?bytes=3000000&length=no"), dest, limits=SMALL)
    assert str(caught.value) == "too large: more than 100000 bytes, the limit"
    assert caught.value.permanent
    assert len(dest.getvalue()) <= 100_000


def test_the_default_limit_is_named_in_megabytes(web_site):
    error = fetch_error(web_site.url("/big?bytes=60000000"))  # refused on Content-Length: never sent
    assert str(error) == "too large: over the 50 MB limit (Content-Length 57.2 MB)"


# --- Time and connections --------------------------------------------------------------------


def test_a_trickling_server_is_cut_off_at_the_deadline(web_site):
    limits = Limits(timeout_seconds=1.5, allowed_hosts=frozenset({"localhost"}))
    started = time.monotonic()

    error = fetch_error(web_site.url("/trickle?bytes=100&interval=0.2"), limits)

    assert time.monotonic() - started < 2.5
    assert str(error).startswith("the server sent too slowly: ")
    assert str(error).endswith(" bytes/s)")
    assert not error.permanent


def test_a_refused_connection_is_transient():
    error = fetch_error(f"http://localhost:{free_port()}/page")
    assert str(error).startswith("cannot connect to localhost (127.0.0.1): ")
    assert not error.permanent


def test_a_name_that_does_not_resolve_is_transient(fake_dns):
    fake_dns.answers["nowhere.test"] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    error = fetch_error("http://nowhere.test/page")
    assert (str(error), error.permanent) == ("cannot resolve nowhere.test: Name or service not known", False)


# --- URLs typed by an operator ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("  HTTP://Example.COM:80/a b?q=1#top ", "http://example.com/a%20b?q=1"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
    ],
)
def test_a_typed_url_is_normalised(typed, normalised):
    assert check_url(typed, Limits()) == normalised


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("example.com/page", "not a web address: it must start with http:// or https://"),
        ("ftp://example.com/file", "not a web address: ftp: URLs are not fetched (only http and https)"),
        ("javascript:alert(1)", "not a web address: javascript: URLs are not fetched (only http and https)"),
        ("http:///path", "no host name in the URL"),
        ("https://user:secret@example.com/", "a user name or password in the URL is not supported"),
        ("http://example.com:0/", "port 0 does not exist"),
        ("http://example.com/" + "a" * 2000, "too long: 2019 characters (at most 2000)"),
    ],
)
def test_a_url_we_will_not_fetch_is_refused_with_the_reason(typed, reason):
    with pytest.raises(FetchError) as caught:
        check_url(typed, Limits())
    assert (str(caught.value), caught.value.permanent) == (reason, True)
