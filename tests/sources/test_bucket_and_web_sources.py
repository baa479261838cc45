"""Bucket and web-page sources end to end: a real S3-compatible server (moto) and a real web
site on loopback; unchanged objects and pages are not read again; a redirect to a private
address is refused (server-side request forgery) and the other pages go on."""

import pytest
from django.core.management import call_command

from documents.models import Source, SourceDocument
from queue_admin import file_sources, sources

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

GUIDE = b"# Guide\n\n## Install\n\nRun pip install sidecar on a machine with Python 3.11 or newer.\n"


def keys_of(source):
    return set(SourceDocument.objects.filter(source=source).values_list("source_key", flat=True))


def test_a_bucket_prefix_syncs_and_unchanged_objects_are_not_downloaded(s3):
    bucket = s3.make_bucket()
    s3.put(bucket, "docs/guide.md", GUIDE)
    s3.put(bucket, "docs/deep/notes.txt", b"Notes about the nightly backups.")
    s3.put(bucket, "docs/folder/", b"")  # a folder marker, not a file
    s3.put(bucket, "other/skip.md", b"# Not under the prefix")
    source = file_sources.attach("s3", [f"s3://{bucket}/docs/"], name="bucket", endpoint_url=s3.endpoint_url)
    report = file_sources.run_sync(source)
    assert (report.seen, report.new, report.failed) == (2, 2, 0)
    assert keys_of(source) == {"guide.md", "deep/notes.txt"}
    guide = SourceDocument.objects.get(source=source, source_key="guide.md")
    assert guide.metadata["etag"] and guide.metadata["object_key"] == "docs/guide.md"
    assert guide.title == "Guide"

    s3.put(bucket, "docs/deep/notes.txt", b"Notes about the monthly restore tests.")
    s3.delete(bucket, "docs/guide.md")
    again = file_sources.run_sync(source)
    assert (again.seen, again.changed, again.unchanged, again.removed) == (1, 1, 0, 1)
    third = file_sources.run_sync(source)
    assert (third.unchanged, third.changed) == (1, 0)


def test_a_bucket_that_does_not_exist_is_refused_at_attach_with_nothing_written(s3):
    with pytest.raises(sources.SourceError, match="does not exist"):
        file_sources.attach("s3", ["s3://no-such-bucket-here/x"], name="nope", endpoint_url=s3.endpoint_url)
    assert not Source.objects.filter(name="nope").exists()


def test_credentials_are_never_stored(s3):
    bucket = s3.make_bucket()
    source = file_sources.attach("s3", [f"s3://{bucket}/"], name="bucket", endpoint_url=s3.endpoint_url)
    assert "AWS" not in str(source.options) and "SECRET" not in str(source.options).upper()


def test_web_pages_sync_a_304_reads_nothing_and_a_redirect_to_loopback_is_refused(web_site, settings):
    settings.SOURCE_URL_ALLOWED_HOSTS = ["localhost"]
    page = web_site.url("/page")
    sneaky = web_site.url("/redirect?to=" + web_site.url("/page", host="127.0.0.1"))
    missing = web_site.url("/status/404")
    source = file_sources.attach("urls", [page, sneaky, missing], name="site")
    report = file_sources.run_sync(source)
    reasons = {failure["key"]: failure["reason"] for failure in report.failures}
    assert report.new == 1 and keys_of(source) == {page}
    assert reasons[missing] == "HTTP 404 Not Found"
    assert "loopback address (server-side request forgery guard)" in reasons[sneaky]
    assert not any(r.headers.get("host", "").startswith("127.0.0.1") for r in web_site.requests)
    document = SourceDocument.objects.get(source=source)
    assert document.title == "Hello" and document.metadata["etag"] == '"v1"'
    again = file_sources.run_sync(source)
    assert again.unchanged == 1 and again.new == again.changed == 0  # the server answered 304


def test_a_url_source_refuses_loopback_unless_the_host_is_allowed(web_site, capsys):
    source = file_sources.attach("urls", [web_site.url("/page")], name="site")
    report = file_sources.run_sync(source)
    assert "server-side request forgery guard" in report.failures[0]["reason"]
    assert web_site.requests == []


def test_a_sitemap_source_from_the_command(web_site, settings, capsys):
    settings.SOURCE_URL_ALLOWED_HOSTS = ["localhost"]
    call_command(
        "source", "attach", "--kind", "urls", "--name", "site", "--sitemap", web_site.url("/sitemap.xml")
    )
    out = capsys.readouterr().out
    assert "Synced site:" in out
    assert web_site.url("/page") in keys_of(Source.objects.get(name="site"))


def test_a_refused_url_among_several_is_named_and_nothing_is_attached():
    good = "https://example.com/handbook"
    with pytest.raises(sources.SourceError) as refused:
        file_sources.attach("urls", [good, "ftp://example.com/file.txt"], name="site")
    assert str(refused.value).startswith("ftp://example.com/file.txt")
    with pytest.raises(sources.SourceError, match="Give the URLs of the pages, or the URL of a sitemap"):
        file_sources.attach("urls", [], name="site")
    assert not Source.objects.filter(name="site").exists()


def test_a_bad_source_name_in_the_shell_is_a_plain_error(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as refused:
        call_command("source", "attach", "--kind", "folder", str(tmp_path), "--name", "Bad Name")
    assert "lowercase" in str(refused.value) or "letters" in str(refused.value)
    assert not Source.objects.filter(name="Bad Name").exists()
