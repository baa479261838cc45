"""An S3-compatible bucket prefix as a source of files: list the objects under it, download one.

Works with AWS S3 and with anything that speaks its API at another endpoint URL (MinIO, R2, GCS
interoperability). Credentials come only from boto3's default chain in the workers' environment
(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an instance role): they are never stored
in the database nor passed in here, so no message made here can carry one.

Every failure becomes a BucketError: a plain reason for the operator, and whether it is
permanent (a missing bucket, refused credentials, a bad URI) or worth trying again later
(a connection refused, a timeout, a busy or failing server).
"""

import re
import socket
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from documents.sources.sizes import readable_size

CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
MAX_ATTEMPTS = 3
PAGE_SIZE = 1000  # the most S3 returns per ListObjectsV2 page
CHUNK_BYTES = 1024 * 1024
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
REGION = re.compile(r"[a-z0-9-]+")

NO_CREDENTIALS = (
    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another boto3 credential "
    "source) in the environment of the workers"
)
CREDENTIALS_REFUSED = (
    "access denied: the credentials were refused (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
    "in the workers' environment)"
)
# S3 error codes, by what they mean for the operator.
BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
}
NOT_ALLOWED = {"AccessDenied", "AllAccessDisabled", "AccountProblem"}
WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
BUSY = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
}


class BucketError(Exception):
    """str(e) is a plain reason for the operator, never containing credentials; `permanent`
    says that trying again will not help until someone changes something."""

    def __init__(self, reason: str, *, permanent: bool):
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class BucketLocation:
    bucket: str
    prefix: str  # "" or as given, e.g. "manuals/"
    endpoint_url: str = ""  # "" is AWS; e.g. "http://127.0.0.1:9000" for MinIO
    region: str = ""


@dataclass(frozen=True)
class Entry:
    key: str  # the object's full key
    size: int
    modified: datetime  # aware, UTC
    etag: str  # as S3 gives it, quotes stripped


def parse_s3_uri(uri: str, *, endpoint_url: str = "", region: str = "") -> BucketLocation:
    """'s3://bucket/some/prefix' as a BucketLocation; BucketError (permanent) saying what is wrong."""
    uri = uri.strip()
    if not uri.lower().startswith("s3://"):
        raise BucketError(f'not an S3 URI: expected s3://bucket/prefix, got "{uri}"', permanent=True)
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise BucketError(
            f'the bucket name "{bucket}" is not valid: 3 to 63 lowercase letters, digits, dots and '
            "hyphens, starting and ending with a letter or digit",
            permanent=True,
        )
    endpoint_url = endpoint_url.strip().rstrip("/")
    if endpoint_url:
        _check_endpoint_url(endpoint_url)
    region = region.strip()
    if region and not REGION.fullmatch(region):
        raise BucketError(
            f'the region "{region}" is not valid (e.g. eu-west-1, or auto for R2)', permanent=True
        )
    return BucketLocation(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, region=region)


def _check_endpoint_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise BucketError("the endpoint URL is not a valid URL", permanent=True) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BucketError(
            "the endpoint URL must be http:// or https:// and a host, e.g. http://127.0.0.1:9000",
            permanent=True,
        )
    # The URL is stored and shown; credentials belong in the workers' environment.
    if parts.username or parts.password:
        raise BucketError(
            "the endpoint URL must not contain credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment of the workers instead",
            permanent=True,
        )
    if parts.query or parts.fragment:
        raise BucketError("the endpoint URL must not have a query or a fragment", permanent=True)


def client_for(
    location: BucketLocation,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
):
    """A boto3 S3 client for `location`, with credentials from boto3's default chain only."""
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        # MinIO and most other S3-compatible servers do not serve bucket.host virtual hosts.
        s3={"addressing_style": "path"} if location.endpoint_url else None,
    )
    # A session of its own: boto3's default session is not safe to share between threads.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=location.endpoint_url or None,
        region_name=location.region or None,
        config=config,
    )


def list_entries(location: BucketLocation, *, after: str = "", client=None) -> Iterator[Entry]:
    """Every object under the prefix in key order, after the key `after`, fetched page by page as
    the caller iterates. Folder markers (keys ending in '/') are skipped. A BucketError, even after
    some entries, means the listing is incomplete."""
    request = {"Bucket": location.bucket, "Prefix": location.prefix}
    if after:
        request["StartAfter"] = after
    try:
        client = client or client_for(location)
        pages = client.get_paginator("list_objects_v2").paginate(
            **request, PaginationConfig={"PageSize": PAGE_SIZE}
        )
        for page in pages:
            for item in page.get("Contents", ()):
                if not item["Key"].endswith("/"):
                    yield _entry(item["Key"], item["Size"], item["LastModified"], item["ETag"])
    except (BotoCoreError, ClientError) as error:
        raise _bucket_error(error, location) from None


def check_access(location: BucketLocation, client=None) -> None:
    """Can the workers list this bucket prefix? BucketError with the plain reason if not."""
    try:
        client = client or client_for(location)
        try:
            client.head_bucket(Bucket=location.bucket)
        except ClientError as error:
            # A HEAD answer has no body, so a refusal is a bare 403: the listing below says why.
            if _status(error) != 403:
                raise
        client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1)
    except (BotoCoreError, ClientError) as error:
        raise _bucket_error(error, location) from None


def download(location: BucketLocation, key: str, dest, *, max_bytes: int, client=None) -> Entry:
    """Stream the object `key` into the binary file `dest`, never more than `max_bytes`; its
    Entry as the download saw it. On a BucketError, `dest` may hold part of the object."""
    limit = readable_size(max_bytes)
    try:
        client = client or client_for(location)
        response = client.get_object(Bucket=location.bucket, Key=key)
        announced = response.get("ContentLength")
        with closing(response["Body"]) as body:
            if announced is not None and announced > max_bytes:
                raise BucketError(
                    f"too large: {readable_size(announced)}, over the {limit} limit", permanent=True
                )
            written = 0
            for chunk in body.iter_chunks(CHUNK_BYTES):
                written += len(chunk)
                # The announced length can be missing or wrong; what arrives is what counts.
                if written > max_bytes:
                    announced_size = "no size" if announced is None else readable_size(announced)
                    raise BucketError(
                        f"too large: more than the {limit} limit arrived (the server announced {announced_size})",
                        permanent=True,
                    )
                dest.write(chunk)
    except (BotoCoreError, ClientError) as error:
        raise _bucket_error(error, location, key) from None
    return _entry(key, written, response["LastModified"], response["ETag"])


def _entry(key: str, size: int, modified: datetime, etag: str) -> Entry:
    return Entry(key=key, size=size, modified=modified.astimezone(UTC), etag=etag.strip('"'))


# --- Errors, in the operator's words ---------------------------------------------------------
# Raised `from None` above: botocore's own messages can hold a proxy URL with its password, and
# a logged traceback would show them.


def _bucket_error(error: Exception, location: BucketLocation, key: str = "") -> BucketError:
    where = _where(location)
    if isinstance(error, ClientError):
        return _refusal(error, location, key)
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return BucketError(NO_CREDENTIALS, permanent=True)
    if isinstance(error, CredentialRetrievalError):
        return BucketError(
            "no credentials: boto3 could not fetch them from their source (an instance role, SSO, "
            "a credential process); try again, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            permanent=False,
        )
    if isinstance(error, SSLError):
        return BucketError(
            f"cannot reach {where}: the TLS handshake failed (check its certificate)", permanent=True
        )
    if isinstance(error, ProxyConnectionError):
        return BucketError(
            f"cannot reach {where}: the proxy did not let the connection through", permanent=False
        )
    if isinstance(error, ConnectTimeoutError):
        return BucketError(f"cannot reach {where}: the connection timed out", permanent=False)
    if isinstance(error, EndpointConnectionError):
        return BucketError(f"cannot reach {where}: {_connection_failure(error)}", permanent=False)
    if isinstance(error, ReadTimeoutError):
        return BucketError(f"{where} stopped answering (read timeout)", permanent=False)
    if isinstance(error, ResponseStreamingError | IncompleteReadError | ConnectionClosedError):
        return BucketError(f"the connection to {where} broke off during the transfer", permanent=False)
    if isinstance(error, ParamValidationError):
        return BucketError(f"invalid request: {error}", permanent=True)
    return BucketError(f"the request to {where} failed ({type(error).__name__})", permanent=False)


def _refusal(error: ClientError, location: BucketLocation, key: str) -> BucketError:
    """The server answered with an error: its code and status only, never the SDK's text."""
    code, status = error.response.get("Error", {}).get("Code", ""), _status(error)
    where, bucket = _where(location), f'the bucket "{location.bucket}"'
    if code == "NoSuchKey" or (key and code in ("404", "NotFound")):
        return BucketError("gone: the object was deleted during the sync", permanent=True)
    if code == "NoSuchBucket" or status == 404:
        return BucketError(f"{bucket} does not exist (at {where})", permanent=True)
    if code in BAD_CREDENTIALS:
        return BucketError(CREDENTIALS_REFUSED, permanent=True)
    if code in NOT_ALLOWED or status == 403:
        return BucketError(
            f"access denied: the credentials may not {'read objects in' if key else 'list'} {bucket} "
            "(they need s3:ListBucket and s3:GetObject on it)",
            permanent=True,
        )
    if code in WRONG_REGION or status == 301:
        region = f'"{location.region}"' if location.region else "the default one"
        return BucketError(f"{bucket} is in another region than {region}: set the region", permanent=True)
    if code in BUSY or status == 429 or status >= 500:
        return BucketError(f"{where} is busy or failing ({code or 'error'}, HTTP {status})", permanent=False)
    return BucketError(f"{where} refused the request ({code or 'error'}, HTTP {status})", permanent=True)


def _status(error: ClientError) -> int:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def _where(location: BucketLocation) -> str:
    if not location.endpoint_url:
        return "AWS S3"
    parts = urlsplit(location.endpoint_url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _connection_failure(error: EndpointConnectionError) -> str:
    cause = error.kwargs.get("error")
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        cause = cause.__cause__ or cause.__context__
    return "the connection failed"
