"""The one module that speaks HTTP to embedding services.

Every failure leaves here as an :class:`EmbeddingError` whose *kind* tells the queue what to do
(DESIGN.md, "Fail precisely"):

=====================================================  ==============  ===================
what happened                                          kind            retried here?
=====================================================  ==============  ===================
connect error, timeout, dropped connection, deadline   transient       yes (tenacity)
408, 500, 502, 503, 504 and other 5xx but 501/505      transient       yes
2xx whose body is not JSON (cut short, garbled, HTML)  transient       yes
429                                                    rate_limited    no: the queue waits
other 4xx, 501, 505, 3xx                               permanent       no
2xx larger than the cap                                permanent       no
=====================================================  ==============  ===================

Transient errors are retried a few times with full-jitter exponential back-off, so one
dropped connection does not cost a trip through the queue. A 429 is raised at once: its
Retry-After applies to every worker, and only the queue (``next_attempt_at``) can make them
all wait. The API key is sent as a bearer token and scrubbed from every message we build.

A body that is not JSON says nothing about the texts: a server answering the same texts
again answers well-formed JSON, or keeps failing, which the queue's retry limit and the
circuit breaker catch. Counted permanent, one garbled answer would dead-letter healthy
documents (the fault-storm suite: 2 % of answers cut short). JSON of the wrong shape, wrong
dimensions or NaN is the model's answer, and stays permanent (responses.py, base.py).

Every retry is a request the provider counts. Whoever shares a quota or a circuit breaker
with other processes (the queue worker) passes ``may_retry`` to :meth:`HttpJsonClient.post_json`:
it is asked before each retry and may refuse (no room under the shared rate limit, the breaker
opened, the worker is stopping); the last error is then raised as it is.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .base import EmbeddingError

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
# How much of a response body goes into an error message, and how much of an error response
# we read to find it. Enough to show an API's error JSON, short enough for a log line.
EXCERPT_CHARS = 200
ERROR_BODY_BYTES = 4096

# 501 and 505 say the server will never do this; every other 5xx (including a proxy's 520-524)
# is the server or something in front of it having a bad moment.
PERMANENT_5XX = frozenset({501, 505})
TRANSIENT_4XX = frozenset({408})


class _RetryRefused(Exception):
    def __init__(self, error: EmbeddingError):
        self.error = error


@dataclass(frozen=True)
class HttpOptions:
    """How patient one client is.

    ``timeout_seconds`` bounds one attempt: the read, write and pool timeouts, and a total
    deadline checked while the body arrives, so a server that trickles bytes just often
    enough to beat the read timeout is still cut off. Worst case for one ``post_json`` is
    about ``max_attempts * timeout_seconds + (max_attempts - 1) * max_retry_wait_seconds``;
    settings keep that under the django-q2 task timeout.
    """

    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    max_attempts: int = 3
    # Back-off before retry n is uniform in [0, min(max, 0.5 * 2**n)] seconds (full jitter).
    retry_wait_multiplier_seconds: float = 0.5
    max_retry_wait_seconds: float = 10.0
    # A full batch of 128 vectors of 3072 floats is ~9 MB of JSON; anything far beyond what a
    # batch can need is a broken or hostile server, not an answer. See ``fit_batch``.
    max_response_bytes: int = 64 * MiB

    def fit_batch(self, max_batch_size: int, dimensions: int) -> HttpOptions:
        """These options, with the size cap raised if a full batch of vectors could exceed it.

        A float written as JSON text takes up to ~24 bytes; twice that leaves room for the
        envelope and pretty-printing.
        """
        needed = max_batch_size * dimensions * 48
        return replace(self, max_response_bytes=max(self.max_response_bytes, needed))


class HttpJsonClient:
    """POSTs JSON to one service and returns its parsed JSON answer, or raises EmbeddingError."""

    def __init__(self, base_url: str, api_key: str | None = None, options: HttpOptions | None = None):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self.options = options or HttpOptions()
        self._timeout = httpx.Timeout(
            self.options.timeout_seconds,
            connect=min(self.options.connect_timeout_seconds, self.options.timeout_seconds),
        )

    def __repr__(self) -> str:  # the key stays out of reprs, which end up in logs and tracebacks
        return f"HttpJsonClient({self.base_url!r}, api_key={'set' if self._api_key else 'none'})"

    def post_json(self, path: str, payload: Any, may_retry: Callable[[], bool] | None = None) -> Any:
        """POST ``payload`` to ``base_url + path``; retry transient failures (each only if
        ``may_retry()`` allows it, when given); return parsed JSON."""
        return self._with_retries(lambda: self._send_once("POST", path, json=payload), may_retry)

    def get_json(self, path: str) -> Any:
        """GET ``base_url + path`` and return its parsed JSON; transient failures retried."""
        return self._with_retries(lambda: self._send_once("GET", path))

    def post_file(self, path: str, filename: str, content: bytes, fields: dict[str, str]) -> Any:
        """POST one file as ``multipart/form-data`` (field ``file``) with ``fields``; return
        parsed JSON. A retried upload may leave a second copy at the service (harmless)."""
        files = {"file": (filename, content, "application/jsonl")}
        return self._with_retries(lambda: self._send_once("POST", path, files=files, data=fields))

    def get_bytes(self, path: str, max_bytes: int) -> bytes:
        """GET ``base_url + path`` and return its body, refusing more than ``max_bytes``."""
        return self._with_retries(lambda: self._send_once("GET", path, parse_json=False, limit=max_bytes))

    def _with_retries(self, send: Callable[[], Any], may_retry: Callable[[], bool] | None = None) -> Any:
        options = self.options
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, EmbeddingError) and exc.kind == "transient"),
            stop=stop_after_attempt(options.max_attempts),
            wait=wait_random_exponential(
                multiplier=options.retry_wait_multiplier_seconds, max=options.max_retry_wait_seconds
            ),
            before_sleep=functools.partial(_log_retry, options.max_attempts),
            retry_error_callback=_give_up,
        )
        gate = may_retry
        failed: list[EmbeddingError] = []

        def attempt():
            # After the back-off, right before sending: a permit taken earlier would let the
            # request reach the provider later than the shared limit counted it.
            if failed and gate is not None and not gate():
                raise _RetryRefused(failed[-1])
            try:
                return send()
            except EmbeddingError as exc:
                failed.append(exc)
                raise

        try:
            return retrying(attempt)
        except _RetryRefused as refused:
            error = refused.error
            raise EmbeddingError(
                f"{error} (attempt {len(failed)}; not retried now: the shared rate limit or circuit breaker "
                "says wait, or the worker is stopping)",
                kind=error.kind,
                retry_after=error.retry_after,
            ) from error

    def _send_once(
        self, method: str, path: str, *, parse_json: bool = True, limit: int | None = None, **request
    ):
        url = f"{self.base_url}/{path.lstrip('/')}"
        where = f"{method} {url}"
        deadline = time.monotonic() + self.options.timeout_seconds
        client = shared_client(self.base_url, self._api_key)
        try:
            with client.stream(method, url, timeout=self._timeout, **request) as response:
                if response.is_success:
                    body = _read_capped(response, limit or self.options.max_response_bytes, deadline)
                    return _parse_json(response, body) if parse_json else body
                raise _status_error(response, _read_excerpt(response, deadline))
        except EmbeddingError as exc:
            message = self._scrub(f"{where}: {exc}")
            raise EmbeddingError(message, kind=exc.kind, retry_after=exc.retry_after) from None
        except httpx.HTTPError as exc:
            kind, what = _classify_transport_error(exc)
            detail = f": {exc}" if str(exc) and not isinstance(exc, httpx.TimeoutException) else ""
            raise EmbeddingError(self._scrub(f"{where}: {what}{detail}"), kind=kind) from exc

    def _scrub(self, text: str) -> str:
        """Remove the API key from text we are about to log or raise (servers echo it back)."""
        return text.replace(self._api_key, "[redacted]") if self._api_key else text


# --- One pooled client per (base URL, key) and process ----------------------------------------

_clients: dict[tuple[str, str | None], httpx.Client] = {}
_clients_lock = threading.Lock()


def shared_client(base_url: str, api_key: str | None) -> httpx.Client:
    """The process's pooled client for this service, created on first use.

    Shared so that every provider object (and the fallback, and search) reuses warm
    keep-alive connections; timeouts are passed per request, so only the URL and the key
    tell clients apart.
    """
    key = (base_url, api_key)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            headers = {"Accept": "application/json", "User-Agent": "sidecar-embeddings"}
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            client = httpx.Client(
                headers=headers,
                verify=_tls_context(),
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=30),
                # Redirects are refused: a POST redirected elsewhere would carry the key along.
                follow_redirects=False,
            )
            _clients[key] = client
        return client


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~60 ms; one context serves every client of the process.
    return httpx.create_ssl_context()


def close_shared_clients() -> None:
    """Close every pooled client (tests, and a clean shutdown)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _forget_clients_after_fork() -> None:
    # django-q2 forks its workers. A child must not write to sockets the parent also uses, and
    # must not close them either (that would end the parent's TLS sessions), so it just forgets
    # them and dials its own.
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_clients_after_fork)


# --- Reading and classifying one response ------------------------------------------------------


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The decoded body, refusing more than ``limit`` bytes or arriving after ``deadline``.

    Streams instead of ``response.read()`` so a 2 GB body (or a gzip bomb: the limit counts
    decoded bytes) is dropped at the limit instead of exhausting memory.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise EmbeddingError(
            f"response larger than {_size(limit)} (Content-Length {_size(int(declared))}); refused unread",
            kind="permanent",
        )
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise EmbeddingError(f"response larger than {_size(limit)}; stopped reading", kind="permanent")
        _check_deadline(deadline, f"after {len(body)} bytes of the body")
    return bytes(body)


def _read_excerpt(response: httpx.Response, deadline: float) -> str:
    """The start of an error response's body, for the message; the rest is never read."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= ERROR_BODY_BYTES:
            break
        _check_deadline(deadline, "while reading an error response")
    return _excerpt(bytes(body))


def _check_deadline(deadline: float, where: str) -> None:
    # httpx has only per-operation timeouts (encode/httpx#1450): a server sending one byte per
    # second never trips a 30 s read timeout. Checking between chunks closes that for the body.
    # Headers are still bounded only by the read timeout per gap and httpcore's 100 KiB limit.
    if time.monotonic() > deadline:
        raise EmbeddingError(
            f"deadline exceeded {where} (the server is sending too slowly)", kind="transient"
        )


def _parse_json(response: httpx.Response, body: bytes) -> Any:
    try:
        # NaN and Infinity are accepted on purpose: validate_result then names the bad rows,
        # which says more than "invalid JSON".
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        content_type = response.headers.get("content-type") or "no content type"
        raise EmbeddingError(
            f"HTTP {response.status_code} but the body is not JSON ({content_type}, {len(body)} bytes; "
            f"{exc}): {_excerpt(body)}",
            kind="transient",
        ) from None


def _status_error(response: httpx.Response, excerpt: str) -> EmbeddingError:
    status = response.status_code
    described = f"HTTP {status} {response.reason_phrase}".rstrip() + (f": {excerpt}" if excerpt else "")
    if status == 429:
        retry_after = parse_retry_after(response.headers)
        waited = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        return EmbeddingError(
            f"rate limited, {described}{waited}", kind="rate_limited", retry_after=retry_after
        )
    if status in TRANSIENT_4XX or (status >= 500 and status not in PERMANENT_5XX):
        return EmbeddingError(described, kind="transient")
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        return EmbeddingError(
            f"{described}; redirected to {location}: set the base URL to where the service is",
            kind="permanent",
        )
    return EmbeddingError(described, kind="permanent")


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or HTTP-date).

    None when the server said nothing usable; a date in the past is 0.
    """
    milliseconds = headers.get("retry-after-ms", "").strip()
    try:
        if milliseconds:
            return max(0.0, float(milliseconds) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; email.utils leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


_TIMEOUT_PHASES = {
    httpx.ConnectTimeout: "timed out connecting",
    httpx.ReadTimeout: "timed out waiting for the response",
    httpx.WriteTimeout: "timed out sending the request",
    httpx.PoolTimeout: "timed out waiting for a free pooled connection",
}


def _classify_transport_error(exc: httpx.HTTPError) -> tuple[str, str]:
    """(kind, what happened) for an exception raised before we had a whole response."""
    if isinstance(exc, httpx.TimeoutException):
        return "transient", _TIMEOUT_PHASES.get(type(exc), "timed out")
    if isinstance(exc, httpx.ConnectError):
        return "transient", "could not connect"
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        return "transient", "connection failed"
    # UnsupportedProtocol, LocalProtocolError, DecodingError, ...: sending again won't help.
    return "permanent", "request failed"


def _excerpt(body: bytes) -> str:
    text = " ".join(body[: EXCERPT_CHARS * 4].decode("utf-8", "replace").split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


# --- tenacity hooks ----------------------------------------------------------------------------


def _log_retry(max_attempts: int, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0
    # The message was scrubbed when the error was made; the key never reaches a log.
    logger.warning(
        "embedding request attempt %d of %d failed (%s); retrying in %.2f s",
        state.attempt_number,
        max_attempts,
        exc,
        wait,
    )


def _give_up(state: RetryCallState) -> Any:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, EmbeddingError) and state.attempt_number > 1:
        raise EmbeddingError(
            f"{exc} (gave up after {state.attempt_number} attempts)",
            kind=exc.kind,
            retry_after=exc.retry_after,
        ) from exc
    raise exc  # type: ignore[misc]
