"""The secrets the test suite configures, in one place, so that conftest can scan every log
line the suite writes for them (pytest_sessionfinish): none may ever appear."""

import re

OPENAI_API_KEY = "sk-test-SECRET-7f3a9c0d2e"
OPS_API_KEY = "sk-test-ops-0123456789abcdef"
PIPELINE_API_KEY = "sk-test-key-pipeline-5e1b"
DATABASE_PASSWORD = "db-pa55word-secret"
UPSTREAM_BEARER = "tok_live_abcdef123"
METRICS_TOKEN = "metrics-token-for-the-tests-0123456789"
S3_SECRET_ACCESS_KEY = "s3-test-SECRET-wJalrXUtnFEMI-4b8d"

ALL = (
    OPENAI_API_KEY,
    OPS_API_KEY,
    PIPELINE_API_KEY,
    DATABASE_PASSWORD,
    UPSTREAM_BEARER,
    METRICS_TOKEN,
    S3_SECRET_ACCESS_KEY,
)
# API tokens the tests issue are random: match their shape (documents.models.ApiToken).
API_TOKEN = re.compile(r"sidecar_[A-Za-z0-9_-]{43}")


def leaks_in(line: str) -> list[str]:
    """The secrets (or API-token-shaped strings) in `line`."""
    return [secret for secret in ALL if secret in line] + API_TOKEN.findall(line)
