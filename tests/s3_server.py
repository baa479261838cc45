"""A real S3-compatible server on 127.0.0.1 for the tests: moto in server mode, in a thread of
the test process, started once per session.

Use the `s3` fixture: it sets the test credentials in the environment (the only place Sidecar
takes them from) and gives an S3Server for making buckets and objects::

    def test_listing(s3):
        bucket = s3.make_bucket()
        s3.put(bucket, "manuals/a.txt", b"text")
        location = BucketLocation(bucket, "manuals/", endpoint_url=s3.endpoint_url)
"""

import json
import uuid
from contextlib import contextmanager
from functools import cached_property

import boto3
import httpx
import pytest
from botocore.config import Config

from tests import secrets

REGION = "us-east-1"
ADMIN_KEYS = {"aws_access_key_id": "AKIATESTSIDECARADMIN", "aws_secret_access_key": "admin-secret"}


class S3Server:
    def __init__(self, endpoint_url: str):
        self.endpoint_url = endpoint_url

    def client(self, service="s3", **credentials):
        """A boto3 client for this server; credentials from the environment unless given."""
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
            **credentials,
        )

    @cached_property
    def admin(self):
        """The tests' own client, made once (a client costs 0.1 s), with keys of its own so that
        what a test does to the environment's credentials does not touch it."""
        return self.client(**ADMIN_KEYS)

    def make_bucket(self, name: str = "") -> str:
        """A new empty bucket (a unique name unless given): tests share the server."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.admin.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, body: bytes = b"x") -> None:
        self.admin.put_object(Bucket=bucket, Key=key, Body=body)

    def delete(self, bucket: str, key: str) -> None:
        self.admin.delete_object(Bucket=bucket, Key=key)

    def put_many(self, bucket: str, keys, body: bytes = b"x") -> None:
        """Many small objects at once, written straight into the server's store: over HTTP each
        PUT costs about 5 ms in this process, so 2,500 would take 12 s. Listing them is still
        done over HTTP."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key in keys:
            backend.put_object(bucket, key, body)

    @contextmanager
    def checking_credentials(self):
        """While inside, the server checks signatures and IAM policies (moto accepts any keys
        otherwise): only the keys of IAM users (`user_keys`) get through."""
        self._set_unchecked_requests("0")
        try:
            yield
        finally:
            self._set_unchecked_requests("inf")

    def user_keys(self, policy: dict | None = None) -> dict:
        """Access keys of a new IAM user allowed `policy` (none: nothing), as client() takes them.
        Make them before checking_credentials(): while it holds, only such keys get through."""
        iam = self.client("iam", **ADMIN_KEYS)
        user = f"user-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        if policy:
            iam.put_user_policy(UserName=user, PolicyName="sources", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def _set_unchecked_requests(self, count: str) -> None:
        # moto's switch: after `count` more requests, every request is authenticated.
        httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=count, timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    # Port 0: the kernel picks a free port, so no other test can take it first.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Server(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The S3 server, with the test credentials in the environment and nothing else boto3
    could find (a developer's ~/.aws, an instance role)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTSIDECAR00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets.S3_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return s3_server
