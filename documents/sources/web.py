"""Fetching web pages and sitemaps for URL sources.

Everything fetched from outside is hostile, and so is every URL an operator pastes, every
redirect and every sitemap entry. What this module guarantees:

* **No server-side request forgery.** Before each request (the first and after every redirect)
  the host is resolved, and if any of its addresses is loopback, private, link-local (cloud
  metadata at 169.254.169.254), unspecified, multicast, reserved or shared (100.64.0.0/10),
  nothing is sent, unless the operator allowed that host name. The request then goes to the
  address that was checked, not to the name: the URL carries the IP, the ``Host`` header the
  name, and for https the ``sni_hostname`` request extension, which httpcore hands to
  ``SSLContext.wrap_socket`` as ``server_hostname`` (httpcore/_sync/connection.py, ``_connect``),
  so SNI and the certificate's hostname check still use the real name. A name that resolves to a public address when
  checked and to 127.0.0.1 a moment later (DNS rebinding) is never looked up a second time.
* **Bounded size.** A declared ``Content-Length`` over the limit is refused unread; the decoded
  body is counted as it streams to the caller's file, and cut off at the limit.
* **Bounded time.** One deadline covers every hop and the whole body: it is the per-operation
  timeout of each request and is checked between body chunks, so a server trickling a byte a
  second cannot hold a worker. (Response headers are bounded only per read, and by httpcore's
  100 KiB header limit: httpx has no overall timeout, encode/httpx#1450.)

Errors leave as :class:`FetchError`; ``str(error)`` is the reason shown to the operator next to
the URL, and ``permanent`` tells the caller whether trying again later can help. Nothing here
retries: the sync that calls it decides.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import ipaddress
import socket
import ssl
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import BinaryIO

import httpx
from lxml import etree

USER_AGENT = "Sidecar/0.1 (+document source)"
MAX_URL_LENGTH = 2000
MiB = 1024 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A timeout and a rate limit are the server's passing state; every other 4xx is about the URL.
TRANSIENT_4XX = frozenset({408, 429})
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
ALLOW_HINT = "allow the host with SOURCE_URL_ALLOWED_HOSTS if it is an intranet site"
GZIP_MAGIC = b"\x1f\x8b"
SITEMAP_KINDS = ("urlset", "sitemapindex")


class FetchError(Exception):
    """A page that could not be fetched; ``str(error)`` is the plain reason for the operator."""

    def __init__(self, reason: str, *, permanent: bool):
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * MiB
    timeout_seconds: float = 30.0  # the whole fetch: every redirect hop and all of the body
    max_redirects: int = 5
    # Lower-case host names (or IP literals) fetched even when they resolve to private or
    # loopback addresses: intranet sites the operator vouches for.
    allowed_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Fetched:
    status: int  # 2xx, or 304 (not modified: nothing was written)
    url: str  # after redirects
    content_type: str
    etag: str
    last_modified: str
    size: int  # bytes written to dest


# --- Checking URLs and addresses ------------------------------------------------------------


def check_url(url: str, limits: Limits) -> str:
    """The URL, normalised, if it is one we may fetch; FetchError (permanent) saying why not.

    Does not resolve the host; an IP literal is checked against the guard here already.
    """
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise _bad_url(f"too long: {len(text)} characters (at most {MAX_URL_LENGTH})")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise _bad_url(f"not a valid URL: {exc}") from None
    if not parsed.scheme:
        raise _bad_url("not a web address: it must start with http:// or https://")
    if parsed.scheme not in DEFAULT_PORTS:
        raise _bad_url(f"not a web address: {parsed.scheme}: URLs are not fetched (only http and https)")
    if not parsed.host:
        raise _bad_url("no host name in the URL")
    if parsed.userinfo:
        # They would be stored and shown in plain text, and sent to wherever a redirect leads.
        raise _bad_url("a user name or password in the URL is not supported")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _bad_url(f"port {parsed.port} does not exist")
    host = _host(parsed)
    literal = _ip_literal(host)
    if literal is not None:
        _guard(host, [literal], limits)
    port = None if parsed.port == DEFAULT_PORTS[parsed.scheme] else parsed.port
    normal = str(parsed.copy_with(port=port, fragment=None, raw_path=parsed.raw_path))
    if len(normal) > MAX_URL_LENGTH:
        raise _bad_url(f"too long once encoded: {len(normal)} characters (at most {MAX_URL_LENGTH})")
    return normal


def _bad_url(reason: str) -> FetchError:
    return FetchError(reason, permanent=True)


def _host(url: httpx.URL) -> str:
    # The IDNA (xn--) form, lower case, IPv6 without brackets: what DNS, SNI and Host expect.
    return url.raw_host.decode("ascii").lower()


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve_checked(host: str, port: int, limits: Limits) -> list[str]:
    """The addresses to connect to for host, once every one it resolves to has passed the guard."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FetchError(f"cannot resolve {host}: {reason}", permanent=False) from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise FetchError(f"cannot resolve {host}: no addresses", permanent=False)
    _guard(host, addresses, limits)
    return [str(address) for address in addresses]


def _guard(host: str, addresses: list, limits: Limits) -> None:
    # Any one bad address refuses the host: the client might connect to any of them.
    if host in limits.allowed_hosts:
        return
    for address in addresses:
        kind = _unsafe_kind(address)
        if kind is None:
            continue
        where = f"{host} is" if _ip_literal(host) == address else f"{host} resolves to {address},"
        raise FetchError(
            f"refused: {where} {kind} address (server-side request forgery guard); {ALLOW_HINT}",
            permanent=True,
        )


_UNSAFE_KINDS = (
    ("a loopback", lambda a: a.is_loopback),
    ("an unspecified", lambda a: a.is_unspecified),
    ("a link-local", lambda a: a.is_link_local),
    ("a multicast", lambda a: a.is_multicast),
    ("a shared (100.64.0.0/10)", lambda a: a in SHARED_ADDRESS_SPACE),
    ("a reserved", lambda a: a.is_reserved),
    ("a private", lambda a: a.is_private),
    ("a non-public", lambda a: not a.is_global),
)


def _unsafe_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """'a loopback', 'a private', ... for an address we must not fetch from; None if public."""
    if address.version == 6:
        # ::ffff:127.0.0.1 and the 6to4 2002:7f00:1:: reach the IPv4 address they embed.
        address = address.ipv4_mapped or address.sixtofour or address
    for kind, matches in _UNSAFE_KINDS:
        if matches(address):
            return kind
    return None


# --- Fetching -----------------------------------------------------------------------------------


def make_client() -> httpx.Client:
    """The client :func:`fetch` uses when given none (close it when done)."""
    return httpx.Client(
        headers={"User-Agent": USER_AGENT},
        verify=_tls_context(),
        # Proxy variables and .netrc credentials have no business on requests to any page.
        trust_env=False,
        follow_redirects=False,
        # Requests are addressed by IP, and httpcore pools connections by (scheme, IP, port): a
        # kept-alive TLS connection verified for one name would carry a request for another
        # name on the same IP. For the same reason cookies (set per IP) are refused.
        limits=httpx.Limits(max_keepalive_connections=0),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~60 ms; one context serves every client of the process.
    return httpx.create_ssl_context()


def fetch(
    url: str,
    dest: BinaryIO,
    *,
    limits: Limits,
    etag: str = "",
    last_modified: str = "",
    client: httpx.Client | None = None,
) -> Fetched:
    """GET url into dest (a binary file), following redirects, each hop checked by the guard.

    With etag or last_modified, asks for the page only if it changed: a 304 comes back as
    ``Fetched(status=304, size=0)``. Raises FetchError; dest then holds an unusable part.
    """
    current = check_url(url, limits)
    deadline = time.monotonic() + limits.timeout_seconds
    conditional = {"If-None-Match": etag, "If-Modified-Since": last_modified}
    headers = {name: value for name, value in conditional.items() if value}
    seen = {current}
    with _client_or_own(client) as http:
        for _hop in range(limits.max_redirects + 1):
            target = httpx.URL(current)
            host = _host(target)
            addresses = _resolve_checked(host, target.port or DEFAULT_PORTS[target.scheme], limits)
            try:
                with contextlib.closing(
                    _open(http, target, addresses, headers, deadline, limits)
                ) as response:
                    if response.status_code not in REDIRECT_STATUSES:
                        return _receive(response, current, dest, deadline, limits)
                    current = _redirect_target(response, target, limits)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, host, addresses, limits) from exc
            if current in seen:
                raise FetchError(f"redirect loop: {current}", permanent=True)
            seen.add(current)
    raise FetchError(
        f"too many redirects (more than {limits.max_redirects}; a redirect loop?)", permanent=True
    )


@contextlib.contextmanager
def _client_or_own(client: httpx.Client | None) -> Iterator[httpx.Client]:
    """The caller's client as it is, or a new one closed on the way out."""
    if client is not None:
        yield client
    else:
        with make_client() as own:
            yield own


def _open(
    http: httpx.Client,
    target: httpx.URL,
    addresses: list[str],
    headers: dict,
    deadline: float,
    limits: Limits,
) -> httpx.Response:
    """The response (headers read, body not yet) from the first checked address that answers.

    Always to a checked address, never the name (see the module docstring: DNS rebinding).
    Addresses are tried in the resolver's order: localhost may say ::1 first to an IPv4 server.
    """
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(limits)
        request = http.build_request(
            "GET",
            target.copy_with(host=address),
            headers={"Host": target.netloc.decode("ascii"), **headers},
            extensions={"sni_hostname": _host(target)} if target.scheme == "https" else {},
            timeout=remaining,
        )
        try:
            return http.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError as exc:
            if address == addresses[-1] or _caused_by(exc, ssl.SSLError):
                raise
    raise AssertionError("unreachable: _resolve_checked returns at least one address")


def _redirect_target(response: httpx.Response, current: httpx.URL, limits: Limits) -> str:
    location = response.headers.get("location", "").strip()
    if not location:
        raise FetchError(f"HTTP {response.status_code} redirect without a Location", permanent=True)
    try:
        joined = str(current.join(location))
    except httpx.InvalidURL:
        joined = location
    try:
        return check_url(joined, limits)
    except FetchError as exc:
        raise FetchError(f"redirected to {location[:200]}: {exc}", permanent=True) from None


def _receive(response: httpx.Response, url: str, dest: BinaryIO, deadline: float, limits: Limits) -> Fetched:
    status = response.status_code
    if status != 304 and not response.is_success:
        raise _status_error(response)
    size = 0
    if status != 304:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise FetchError(
                f"too large: over the {_size(limits.max_bytes)} limit (Content-Length {_size(int(declared))})",
                permanent=True,
            )
        started = deadline - limits.timeout_seconds
        try:
            # Decoded bytes are counted, so a gzip bomb stops at the limit as well.
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchError(
                        f"too large: more than {_size(limits.max_bytes)}, the limit", permanent=True
                    )
                if time.monotonic() > deadline:
                    raise _too_slow(size, time.monotonic() - started)
                dest.write(chunk)
        except httpx.TimeoutException:
            raise (_too_slow(size, time.monotonic() - started) if size else _timed_out(limits)) from None
    return Fetched(
        status=status,
        url=url,
        content_type=response.headers.get("content-type", ""),
        etag=response.headers.get("etag", ""),
        last_modified=response.headers.get("last-modified", ""),
        size=size,
    )


def _status_error(response: httpx.Response) -> FetchError:
    status = response.status_code
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    retry_after = response.headers.get("retry-after", "").strip()
    if status == 429 and retry_after:
        reason += f" (Retry-After {retry_after[:40]})"
    return FetchError(reason, permanent=status < 500 and status not in TRANSIENT_4XX)


def _transport_error(exc: httpx.HTTPError, host: str, addresses: list[str], limits: Limits) -> FetchError:
    """A FetchError for what went wrong before we had a whole response."""
    if isinstance(exc, httpx.TimeoutException):
        return _timed_out(limits)
    if isinstance(exc, httpx.ConnectError):
        if _caused_by(exc, ssl.SSLCertVerificationError):
            # Not a passing state: the site's certificate does not prove it is this host.
            return FetchError(f"TLS certificate not valid for {host}: {exc}", permanent=True)
        where = host if addresses == [host] else f"{host} ({', '.join(addresses)})"
        return FetchError(f"cannot connect to {where}: {exc}", permanent=False)
    if isinstance(exc, httpx.TransportError):
        return FetchError(f"connection failed: {exc or type(exc).__name__}", permanent=False)
    # DecodingError (a broken gzip body) and the like: fetching again gets the same bytes.
    return FetchError(f"the response could not be read: {exc}", permanent=True)


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _timed_out(limits: Limits) -> FetchError:
    return FetchError(f"timed out after {limits.timeout_seconds:g} s", permanent=False)


def _too_slow(size: int, elapsed: float) -> FetchError:
    rate = size / max(elapsed, 0.001)
    return FetchError(
        f"the server sent too slowly: {size} bytes in {elapsed:.1f} s (under {int(rate) + 1} bytes/s)",
        permanent=False,
    )


def _size(n: int) -> str:
    return f"{round(n / MiB, 1):g} MB" if n >= MiB else f"{n} bytes"


# --- Sitemaps ----------------------------------------------------------------------------------


def sitemap_urls(
    url: str, *, limits: Limits, max_urls: int = 50_000, client: httpx.Client | None = None
) -> list[str]:
    """The page URLs a sitemap lists, in order, without repeats.

    A sitemap index is followed one level deep. Each sitemap is fetched with :func:`fetch`, so
    the same guards apply; gzip-compressed ones (``.xml.gz``) are unpacked, up to
    ``limits.max_bytes``. Entries are normalised where :func:`check_url` accepts them and
    otherwise kept as written, so fetching them reports the problem per URL.
    """
    with _client_or_own(client) as http:
        kind, locations = _read_sitemap(url, limits, max_urls, http)
        if kind == "urlset":
            return locations
        pages: dict[str, None] = {}
        for child in locations:
            try:
                child_kind, child_pages = _read_sitemap(child, limits, max_urls, http)
            except FetchError as exc:
                raise FetchError(f"sitemap {child}: {exc}", permanent=exc.permanent) from exc
            if child_kind != "urlset":
                raise FetchError(
                    f"sitemap {child}: an index inside a sitemap index (only one level is followed)",
                    permanent=True,
                )
            pages.update(dict.fromkeys(child_pages))
            if len(pages) > max_urls:
                raise _too_many(max_urls)
        return list(pages)


def _read_sitemap(url: str, limits: Limits, max_urls: int, http: httpx.Client) -> tuple[str, list[str]]:
    with tempfile.TemporaryFile() as body:
        fetched = fetch(url, body, limits=limits, client=http)
        body.seek(0)
        if body.read(2) != GZIP_MAGIC:
            body.seek(0)
            return _parse_sitemap(body, fetched.url, limits, max_urls)
        body.seek(0)
        with tempfile.TemporaryFile() as unpacked:
            _gunzip(body, unpacked, limits.max_bytes)
            unpacked.seek(0)
            return _parse_sitemap(unpacked, fetched.url, limits, max_urls)


def _gunzip(packed: BinaryIO, dest: BinaryIO, max_bytes: int) -> None:
    size = 0
    with gzip.GzipFile(fileobj=packed) as stream:
        while chunk := _read_gzip(stream):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(
                    f"too large: unpacks to more than {_size(max_bytes)}, the limit", permanent=True
                )
            dest.write(chunk)


def _read_gzip(stream: gzip.GzipFile) -> bytes:
    try:
        return stream.read(64 * 1024)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise FetchError(f"not a sitemap: a broken gzip file ({exc})", permanent=True) from None


def _parse_sitemap(source: BinaryIO, base: str, limits: Limits, max_urls: int) -> tuple[str, list[str]]:
    """('urlset' or 'sitemapindex', the <loc> URLs), reading the XML as a stream."""
    kind = ""
    locations: dict[str, None] = {}
    # No entity is expanded, no DTD loaded, nothing fetched, no node over libxml2's size limits.
    events = etree.iterparse(
        source,
        events=("start", "end"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
    )
    try:
        for event, element in events:
            name = etree.QName(element).localname
            if not kind:
                kind = name
                _check_root(element)
            elif event == "end" and name == "loc":
                location = (element.text or "").strip()
                if location:
                    locations[_page_url(location, base, limits)] = None
                    if len(locations) > max_urls:
                        raise _too_many(max_urls)
            elif event == "end" and name in ("url", "sitemap"):
                # Keeps memory flat on a 50 MB sitemap: entries already read are dropped.
                element.clear()
                while element.getprevious() is not None:
                    del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        raise FetchError(f"not a sitemap: not XML ({exc})", permanent=True) from None
    if not kind:
        raise FetchError("not a sitemap: the document is empty", permanent=True)
    return kind, list(locations)


def _check_root(root) -> None:
    name = etree.QName(root).localname
    if name not in SITEMAP_KINDS:
        raise FetchError(
            f"not a sitemap: the document is <{name}>, not <urlset> or <sitemapindex>", permanent=True
        )
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # Sitemaps have no use for entities; declaring them is how XML bombs and file reads start.
        raise FetchError(
            "refused: the sitemap declares XML entities (sitemaps have none; an XML bomb or a file read?)",
            permanent=True,
        )


def _page_url(location: str, base: str, limits: Limits) -> str:
    try:
        return check_url(str(httpx.URL(base).join(location)), limits)
    except (FetchError, httpx.InvalidURL):
        return location


def _too_many(max_urls: int) -> FetchError:
    return FetchError(f"too many URLs: the sitemap lists more than {max_urls:,} (the limit)", permanent=True)
