"""A small, badly behaved web site on 127.0.0.1 for tests of URL sources.

Each path is one behaviour: a page with validators, errors, redirects (onward, in a loop, in a
long chain, to any URL given as ``?to=``), bodies larger than a limit (with and without
``Content-Length``), a body trickled a byte at a time, and sitemaps (plain, gzip-compressed
as a file or in transit, an index, too many URLs, not XML, an XML bomb). Sitemaps list URLs
on whatever host the request named, so ``localhost:PORT`` and aliases both work.

Every accepted connection and every request is recorded, so a test can prove that a refused
URL never reached the server.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PAGE_BODY = b"<html><head><title>Hello</title></head><body><p>Hello, world.</p></body></html>"
PAGE_ETAG = '"v1"'
PAGE_LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://x/&lol9;</loc></url></urlset>
"""

# An external entity: a parser that resolves it puts a local file into the page URLs.
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://x/&passwd;</loc></url></urlset>
"""


@dataclass(frozen=True)
class SeenRequest:
    path: str
    headers: dict[str, str]  # names in lower case


class WebSite:
    """The site, serving on a free port until ``close()``; ``url(path)`` addresses it."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests: list[SeenRequest] = []
        self.connections = 0
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.site = self
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str, host: str = "localhost", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    site: WebSite

    def verify_request(self, request, client_address) -> bool:
        self.site.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.site.requests.append(
            SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        parts = urlsplit(self.path)
        self.query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        route = ROUTES.get(parts.path) or ROUTES.get(parts.path.rsplit("/", 1)[0] + "/")
        try:
            if route is None:
                self.answer(404, b"not here")
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on purpose: too large, too slow

    def log_message(self, format, *args) -> None:
        pass

    # --- helpers ---

    def answer(
        self, status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8", **headers
    ):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def here(self, path: str) -> str:
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        return f"{scheme}://{self.headers['Host']}{path}"

    def sitemap(self, paths, index: bool = False) -> bytes:
        outer, inner = ("sitemapindex", "sitemap") if index else ("urlset", "url")
        entries = "".join(f"<{inner}><loc>{self.here(path)}</loc></{inner}>" for path in paths)
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<{outer} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{outer}>'
        ).encode()


# --- behaviours ---------------------------------------------------------------------------------


def page(h: _Handler) -> None:
    if (
        h.headers.get("If-None-Match") == PAGE_ETAG
        or h.headers.get("If-Modified-Since") == PAGE_LAST_MODIFIED
    ):
        h.send_response(304)
        h.send_header("ETag", PAGE_ETAG)
        h.end_headers()
        return
    h.answer(200, PAGE_BODY, ETag=PAGE_ETAG, Last_Modified=PAGE_LAST_MODIFIED)


def status(h: _Handler) -> None:
    code = int(h.path.rsplit("/", 1)[1])
    h.answer(code, b"status", **({"Retry_After": "120"} if code == 429 else {}))


def redirect(h: _Handler) -> None:
    h.redirect(h.query.get("to", "/page"), int(h.query.get("status", "302")))


def loop(h: _Handler) -> None:
    h.redirect("/loop/b" if h.path.endswith("/a") else "/loop/a")


def chain(h: _Handler) -> None:
    left = int(h.path.rsplit("/", 1)[1])
    h.redirect(f"/chain/{left - 1}") if left else page(h)


def secret(h: _Handler) -> None:
    h.answer(200, b"the secret", content_type="text/plain")


def big(h: _Handler) -> None:
    """?bytes=N of 'x'; &length=no sends no Content-Length (the end is the connection closing)."""
    size = int(h.query["bytes"])
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    if h.query.get("length") != "no":
        h.send_header("Content-Length", str(size))
    h.end_headers()
    block = b"x" * 65536
    while size > 0:
        h.wfile.write(block[:size])
        size -= len(block)


def trickle(h: _Handler) -> None:
    """?bytes=N sent one a time, ?interval= seconds apart (a declared length, a live connection)."""
    size, interval = int(h.query.get("bytes", "100")), float(h.query.get("interval", "0.2"))
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.send_header("Content-Length", str(size))
    h.end_headers()
    for _ in range(size):
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(interval)


def set_cookie(h: _Handler) -> None:
    h.answer(200, b"have a cookie", content_type="text/plain", Set_Cookie="session=s3cret; Path=/")


def gzip_page(h: _Handler) -> None:
    h.answer(200, gzip.compress(PAGE_BODY), Content_Encoding="gzip")


def sitemap(h: _Handler) -> None:
    h.answer(200, h.sitemap(["/page", "/a", "/a", "/b#section", "/"]), content_type="application/xml")


def sitemap_gz(h: _Handler) -> None:
    body = gzip.compress(h.sitemap(["/c", "/page"]))
    h.answer(200, body, content_type="application/x-gzip")


def sitemap_encoded(h: _Handler) -> None:
    body = gzip.compress(h.sitemap(["/e"]))
    h.answer(200, body, content_type="application/xml", Content_Encoding="gzip")


def sitemap_index(h: _Handler) -> None:
    children = ["/sitemap.xml", "/sitemap.xml.gz", "/sitemap-encoded.xml"]
    h.answer(200, h.sitemap(children, index=True), content_type="application/xml")


def sitemap_index_of_indexes(h: _Handler) -> None:
    h.answer(200, h.sitemap(["/sitemap-index.xml"], index=True), content_type="application/xml")


def sitemap_index_with_a_missing_child(h: _Handler) -> None:
    h.answer(200, h.sitemap(["/sitemap.xml", "/status/404"], index=True), content_type="application/xml")


def sitemap_many(h: _Handler) -> None:
    count = int(h.query.get("count", "20"))
    h.answer(200, h.sitemap([f"/p{i}" for i in range(count)]), content_type="application/xml")


def not_xml(h: _Handler) -> None:
    h.answer(200, b"this is not XML, it is a sentence", content_type="text/plain")


def bomb(h: _Handler) -> None:
    h.answer(200, BILLION_LAUGHS, content_type="application/xml")


def external_entity(h: _Handler) -> None:
    h.answer(200, EXTERNAL_ENTITY, content_type="application/xml")


def gzip_bomb(h: _Handler) -> None:
    """A sitemap file that unpacks to 10 MB (of spaces, before the root element)."""
    h.answer(
        200, gzip.compress(b" " * (10 * 1024 * 1024) + h.sitemap(["/page"])), content_type="application/gzip"
    )


ROUTES = {
    "/page": page,
    "/status/": status,
    "/redirect": redirect,
    "/loop/": loop,
    "/chain/": chain,
    "/secret": secret,
    "/big": big,
    "/trickle": trickle,
    "/set-cookie": set_cookie,
    "/gzip-page": gzip_page,
    "/sitemap.xml": sitemap,
    "/sitemap.xml.gz": sitemap_gz,
    "/sitemap-encoded.xml": sitemap_encoded,
    "/sitemap-index.xml": sitemap_index,
    "/sitemap-index-of-indexes.xml": sitemap_index_of_indexes,
    "/sitemap-index-missing-child.xml": sitemap_index_with_a_missing_child,
    "/sitemap-many.xml": sitemap_many,
    "/not-xml": not_xml,
    "/bomb.xml": bomb,
    "/external-entity.xml": external_entity,
    "/gzip-bomb.xml.gz": gzip_bomb,
}
