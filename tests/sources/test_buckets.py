"""Bucket sources against a real S3-compatible server on loopback (moto in server mode,
tests/s3_server.py): listing, downloading, and the operator's reason for each failure."""

import hashlib
import io
import socket
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from documents.sources.buckets import (
    CREDENTIALS_REFUSED,
    NO_CREDENTIALS,
    BucketError,
    BucketLocation,
    check_access,
    client_for,
    download,
    list_entries,
    parse_s3_uri,
)
from tests import secrets

MB = 1024 * 1024


def at(s3, bucket, prefix=""):
    return BucketLocation(bucket=bucket, prefix=prefix, endpoint_url=s3.endpoint_url)


def counting_list_calls(client) -> list:
    """ListObjectsV2 requests `client` makes, as they are made."""
    calls = []
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kwargs: calls.append(1))
    return calls


# --- The URI an operator types ---------------------------------------------------------------


def test_an_s3_uri_gives_the_bucket_and_the_prefix_as_written():
    assert parse_s3_uri("s3://manuals-2024/en/guides/") == BucketLocation("manuals-2024", "en/guides/")
    assert parse_s3_uri(" s3://my.bucket ") == BucketLocation("my.bucket", "")
    assert parse_s3_uri(
        "s3://docs/x", endpoint_url="http://127.0.0.1:9000/", region="auto"
    ) == BucketLocation("docs", "x", endpoint_url="http://127.0.0.1:9000", region="auto")


@pytest.mark.parametrize(
    ("uri", "endpoint_url", "reason"),
    [
        ("https://bucket/x", "", 'not an S3 URI: expected s3://bucket/prefix, got "https://bucket/x"'),
        ("s3://ab/x", "", 'the bucket name "ab" is not valid: 3 to 63 lowercase letters'),
        ("s3://My_Bucket/x", "", 'the bucket name "My_Bucket" is not valid'),
        ("s3://" + "a" * 64, "", "is not valid"),
        ("s3://-bucket", "", "is not valid"),
        ("s3://bucket", "ftp://files.example.com", "the endpoint URL must be http:// or https://"),
        ("s3://bucket", "http://", "the endpoint URL must be http:// or https://"),
        ("s3://bucket", "http://host:port", "the endpoint URL is not a valid URL"),
        ("s3://bucket", "http://minio:s3cret@minio:9000", "the endpoint URL must not contain credentials"),
    ],
)
def test_a_bad_uri_is_refused_with_what_is_wrong(uri, endpoint_url, reason):
    with pytest.raises(BucketError) as refused:
        parse_s3_uri(uri, endpoint_url=endpoint_url)
    assert reason in str(refused.value)
    assert refused.value.permanent
    assert "s3cret" not in str(refused.value)


# --- Listing ------------------------------------------------------------------------------------


def test_listing_gives_the_objects_under_the_prefix_in_key_order_without_folder_markers(s3):
    bucket = s3.make_bucket()
    for key in [
        "manuals/b.txt",
        "manuals/",
        "manuals/a.txt",
        "manuals/sub/",
        "manuals/sub/c.txt",
        "other/d.txt",
    ]:
        s3.put(bucket, key, b"" if key.endswith("/") else key.encode())
    before = datetime.now(UTC) - timedelta(seconds=5)

    entries = list(list_entries(at(s3, bucket, "manuals/")))

    assert [e.key for e in entries] == ["manuals/a.txt", "manuals/b.txt", "manuals/sub/c.txt"]
    first = entries[0]
    assert first.size == len(b"manuals/a.txt")
    assert first.etag == hashlib.md5(b"manuals/a.txt").hexdigest()
    assert first.modified.tzinfo == UTC and first.modified >= before.replace(microsecond=0)
    assert [e.key for e in list_entries(at(s3, bucket))][-1] == "other/d.txt"


def test_listing_starts_after_the_given_key(s3):
    bucket = s3.make_bucket()
    for key in ["a/1", "a/2", "a/3", "a/4"]:
        s3.put(bucket, key)

    assert [e.key for e in list_entries(at(s3, bucket, "a/"), after="a/2")] == ["a/3", "a/4"]
    assert list(list_entries(at(s3, bucket, "a/"), after="a/4")) == []


def test_a_long_listing_is_fetched_a_page_at_a_time_as_the_caller_goes(s3):
    bucket = s3.make_bucket()
    s3.put_many(bucket, [f"many/{i:05}.txt" for i in range(2500)])
    location = at(s3, bucket, "many/")
    client = client_for(location)
    calls = counting_list_calls(client)

    entries = list_entries(location, client=client)
    assert calls == []  # nothing asked before the caller iterates
    assert next(entries).key == "many/00000.txt"
    assert len(calls) == 1  # the first entry comes with the first page of 1000, not the whole listing
    rest = list(entries)

    assert len(calls) == 3
    assert [e.key for e in rest] == [f"many/{i:05}.txt" for i in range(1, 2500)]


def test_a_listing_that_fails_part_way_raises_instead_of_ending(s3):
    bucket = s3.make_bucket()
    s3.put_many(bucket, [f"k/{i:05}" for i in range(1500)])
    entries = list_entries(at(s3, bucket))
    next(entries)

    # The server starts refusing the credentials between the first page and the second.
    with s3.checking_credentials(), pytest.raises(BucketError) as refused:
        list(entries)
    assert str(refused.value) == CREDENTIALS_REFUSED


# --- Downloading ----------------------------------------------------------------------------


def test_download_streams_the_object_into_the_file_and_gives_its_entry(s3):
    bucket = s3.make_bucket()
    body = bytes(range(256)) * (3 * MB // 256 + 17)  # several chunks
    s3.put(bucket, "manuals/big.bin", body)
    dest = io.BytesIO()

    entry = download(at(s3, bucket, "manuals/"), "manuals/big.bin", dest, max_bytes=10 * MB)

    assert dest.getvalue() == body
    assert (entry.key, entry.size, entry.etag) == (
        "manuals/big.bin",
        len(body),
        hashlib.md5(body).hexdigest(),
    )
    assert entry.modified.tzinfo == UTC
    listed = next(list_entries(at(s3, bucket, "manuals/")))
    assert (listed.size, listed.etag, listed.modified) == (entry.size, entry.etag, entry.modified)


def test_an_object_over_the_limit_is_refused_before_reading_it(s3):
    bucket = s3.make_bucket()
    s3.put(bucket, "huge.bin", b"\0" * (2 * MB))
    dest = io.BytesIO()

    with pytest.raises(BucketError) as refused:
        download(at(s3, bucket), "huge.bin", dest, max_bytes=1 * MB)

    assert str(refused.value) == "too large: 2 MB, over the 1 MB limit"
    assert refused.value.permanent
    assert dest.getvalue() == b""


def test_a_download_stops_when_more_arrives_than_announced_and_allowed(s3):
    bucket = s3.make_bucket()
    s3.put(bucket, "liar.bin", b"\1" * (3 * MB))
    location = at(s3, bucket)
    client = client_for(location)

    def announce_ten_bytes(parsed, **kwargs):
        parsed["ContentLength"] = 10

    client.meta.events.register("after-call.s3.GetObject", announce_ten_bytes)
    dest = io.BytesIO()

    with pytest.raises(BucketError) as refused:
        download(location, "liar.bin", dest, max_bytes=int(1.5 * MB), client=client)

    assert (
        str(refused.value) == "too large: more than the 1.5 MB limit arrived (the server announced 10 bytes)"
    )
    assert len(dest.getvalue()) <= 1.5 * MB


def test_an_object_deleted_before_its_download_is_gone(s3):
    bucket = s3.make_bucket()
    s3.put(bucket, "brief.txt")
    listed = next(list_entries(at(s3, bucket)))
    s3.delete(bucket, "brief.txt")

    with pytest.raises(BucketError) as refused:
        download(at(s3, bucket), listed.key, io.BytesIO(), max_bytes=MB)

    assert str(refused.value) == "gone: the object was deleted during the sync"
    assert refused.value.permanent


# --- Attaching: the operator's reason for each failure ------------------------------------


def test_access_to_a_readable_bucket_checks_out(s3):
    check_access(at(s3, s3.make_bucket(), "any/prefix/"))


def test_a_missing_bucket_is_named_with_its_endpoint(s3):
    location = at(s3, "no-such-bucket-here")
    expected = f'the bucket "no-such-bucket-here" does not exist (at {s3.endpoint_url})'

    for attempt in (lambda: check_access(location), lambda: list(list_entries(location))):
        with pytest.raises(BucketError) as refused:
            attempt()
        assert str(refused.value) == expected
        assert refused.value.permanent


def test_keys_the_server_does_not_know_are_refused(s3):
    bucket = s3.make_bucket()
    with s3.checking_credentials():
        with pytest.raises(BucketError) as refused:
            check_access(at(s3, bucket))
    assert str(refused.value) == CREDENTIALS_REFUSED
    assert refused.value.permanent


def test_a_wrong_secret_is_refused_and_never_repeated(s3, monkeypatch):
    bucket = s3.make_bucket()
    keys = s3.user_keys(policy=read_policy(bucket))
    with s3.checking_credentials():
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
        check_access(at(s3, bucket))  # the right secret works while credentials are checked
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets.S3_SECRET_ACCESS_KEY)
        with pytest.raises(BucketError) as refused:
            list(list_entries(at(s3, bucket)))
    assert str(refused.value) == CREDENTIALS_REFUSED
    assert secrets.S3_SECRET_ACCESS_KEY not in repr(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_credentials_without_the_right_to_read_the_bucket_are_denied(s3, monkeypatch):
    bucket = s3.make_bucket()
    s3.put(bucket, "a.txt")
    keys = s3.user_keys(policy=None)
    with s3.checking_credentials():
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["aws_access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["aws_secret_access_key"])
        with pytest.raises(BucketError) as listing:
            check_access(at(s3, bucket))
        with pytest.raises(BucketError) as reading:
            download(at(s3, bucket), "a.txt", io.BytesIO(), max_bytes=MB)
    need = "(they need s3:ListBucket and s3:GetObject on it)"
    assert str(listing.value) == f'access denied: the credentials may not list the bucket "{bucket}" {need}'
    assert (
        str(reading.value)
        == f'access denied: the credentials may not read objects in the bucket "{bucket}" {need}'
    )
    assert listing.value.permanent and reading.value.permanent


def test_no_credentials_in_the_environment(s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(BucketError) as refused:
        check_access(at(s3, "some-bucket"))

    assert str(refused.value) == NO_CREDENTIALS
    assert refused.value.permanent


def test_an_endpoint_nobody_listens_on_is_a_transient_failure(s3, refused_url):
    started = time.monotonic()
    with pytest.raises(BucketError) as refused:
        list(list_entries(BucketLocation("some-bucket", "", endpoint_url=refused_url)))

    assert str(refused.value) == f"cannot reach {refused_url}: connection refused"
    assert not refused.value.permanent
    assert time.monotonic() - started < 10  # a few quick retries, not a hang


def test_a_server_that_stops_answering_is_a_transient_failure(s3):
    # Listening but never accepting: the request is sent, no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        location = BucketLocation(
            "some-bucket", "", endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}"
        )
        client = client_for(location, read_timeout=0.5, max_attempts=1)
        with pytest.raises(BucketError) as refused:
            check_access(location, client=client)

    assert str(refused.value) == f"{location.endpoint_url} stopped answering (read timeout)"
    assert not refused.value.permanent


def test_a_busy_server_is_a_transient_failure(s3):
    with slow_down_server() as endpoint_url:
        location = BucketLocation("some-bucket", "", endpoint_url=endpoint_url)
        with pytest.raises(BucketError) as refused:
            list(list_entries(location, client=client_for(location, max_attempts=1)))

    assert str(refused.value) == f"{endpoint_url} is busy or failing (SlowDown, HTTP 503)"
    assert not refused.value.permanent


def read_policy(bucket: str) -> dict:
    # "s3:*": moto checks its own action names (s3:ListObjectsV2, s3:HeadBucket), not IAM's
    # s3:ListBucket that AWS checks for both.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }


class SlowDown(BaseHTTPRequestHandler):
    """What S3 answers a client that sends too many requests (moto never does)."""

    def do_GET(self):
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@contextmanager
def slow_down_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowDown)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
