"""Reading a sitemap for a URL source (documents/sources/web.py): plain, gzip-compressed and
index sitemaps, and the ones we refuse (too many URLs, not a sitemap, an XML bomb, a gzip
bomb), against a real web server on loopback (tests/web_server.py)."""

import time

import pytest

from documents.sources.web import FetchError, Limits, sitemap_urls

LOCAL = Limits(allowed_hosts=frozenset({"localhost"}))


def sitemap_error(url, limits=LOCAL, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as caught:
        sitemap_urls(url, limits=limits, **kwargs)
    return caught.value


def test_a_sitemap_lists_its_pages_in_order_once_each(web_site):
    # The sitemap lists /a twice and /b with a fragment, which is never sent to a server.
    pages = sitemap_urls(web_site.url("/sitemap.xml"), limits=LOCAL)
    assert pages == [web_site.url(path) for path in ("/page", "/a", "/b", "/")]


@pytest.mark.parametrize("path", ["/sitemap.xml.gz", "/sitemap-encoded.xml"])
def test_a_gzip_compressed_sitemap_is_unpacked(web_site, path):
    # .xml.gz is a gzip file as such; the other is gzipped in transit (Content-Encoding).
    expected = {"/sitemap.xml.gz": ["/c", "/page"], "/sitemap-encoded.xml": ["/e"]}[path]
    assert sitemap_urls(web_site.url(path), limits=LOCAL) == [web_site.url(page) for page in expected]


def test_a_sitemap_index_is_followed_one_level(web_site):
    pages = sitemap_urls(web_site.url("/sitemap-index.xml"), limits=LOCAL)

    assert pages == [web_site.url(path) for path in ("/page", "/a", "/b", "/", "/c", "/e")]
    assert web_site.paths() == [
        "/sitemap-index.xml",
        "/sitemap.xml",
        "/sitemap.xml.gz",
        "/sitemap-encoded.xml",
    ]


def test_an_index_of_indexes_is_refused(web_site):
    error = sitemap_error(web_site.url("/sitemap-index-of-indexes.xml"))
    child = web_site.url("/sitemap-index.xml")
    assert str(error) == f"sitemap {child}: an index inside a sitemap index (only one level is followed)"
    assert error.permanent


def test_a_missing_child_sitemap_is_named(web_site):
    error = sitemap_error(web_site.url("/sitemap-index-missing-child.xml"))
    assert (str(error), error.permanent) == (
        f"sitemap {web_site.url('/status/404')}: HTTP 404 Not Found",
        True,
    )


def test_too_many_urls_are_refused_with_the_limit(web_site):
    assert len(sitemap_urls(web_site.url("/sitemap-many.xml?count=20"), limits=LOCAL, max_urls=20)) == 20

    error = sitemap_error(web_site.url("/sitemap-many.xml?count=20"), max_urls=19)
    assert (str(error), error.permanent) == (
        "too many URLs: the sitemap lists more than 19 (the limit)",
        True,
    )


def test_too_many_urls_across_an_index_are_refused(web_site):
    error = sitemap_error(web_site.url("/sitemap-index.xml"), max_urls=5)
    assert str(error) == "too many URLs: the sitemap lists more than 5 (the limit)"


def test_a_document_that_is_not_xml_is_not_a_sitemap(web_site):
    error = sitemap_error(web_site.url("/not-xml"))
    assert str(error).startswith("not a sitemap: not XML (")
    assert error.permanent


def test_a_web_page_is_not_a_sitemap(web_site):
    error = sitemap_error(web_site.url("/page"))
    assert str(error) == "not a sitemap: the document is <html>, not <urlset> or <sitemapindex>"


def test_an_xml_bomb_is_refused_without_expanding_it(web_site):
    started = time.monotonic()
    error = sitemap_error(web_site.url("/bomb.xml"))
    # Our own check refuses any entity declaration; libxml2 may stop this one first, when it
    # declares the entities (its amplification limit). Either way nothing is expanded.
    assert str(error) in (
        "refused: the sitemap declares XML entities (sitemaps have none; an XML bomb or a file read?)",
        "not a sitemap: not XML (Maximum entity amplification factor exceeded, see xmlCtxtSetMaxAmplification., "
        "line 1, column 7 (<string>, line 1))",
    )
    assert error.permanent
    assert time.monotonic() - started < 2


def test_an_external_entity_is_refused_and_not_read(web_site):
    error = sitemap_error(web_site.url("/external-entity.xml"))
    assert (str(error), error.permanent) == (
        "refused: the sitemap declares XML entities (sitemaps have none; an XML bomb or a file read?)",
        True,
    )


def test_a_gzip_bomb_is_cut_off_at_the_size_limit(web_site):
    # 10 KB on the wire, 10 MB unpacked.
    limits = Limits(max_bytes=1024 * 1024, allowed_hosts=frozenset({"localhost"}))
    error = sitemap_error(web_site.url("/gzip-bomb.xml.gz"), limits)
    assert (str(error), error.permanent) == ("too large: unpacks to more than 1 MB, the limit", True)


def test_a_sitemap_is_fetched_behind_the_same_guard(web_site):
    error = sitemap_error(web_site.url("/sitemap.xml"), Limits())
    assert str(error).startswith("refused: localhost resolves to 127.0.0.1, a loopback address")
    assert web_site.connections == 0
