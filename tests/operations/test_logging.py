"""JSON log lines through the configured handler: fields, request ids, batch ids, no secrets."""

import io
import json
import logging

import pytest
from django.test import override_settings

from documents.models import SourceDocument
from embedding_site.logs import JsonFormatter, SecretScrubFilter
from queue_admin.worker import QueueWorker
from tests import secrets
from tests.fakes import FakeEmbedderForQueueTests


@pytest.fixture
def json_lines():
    """The handler settings.LOGGING configured (its filters included), switched to JSON and
    writing into a buffer; returns a function that parses what was written so far."""
    (handler,) = [
        h for h in logging.getLogger().handlers if any(isinstance(f, SecretScrubFilter) for f in h.filters)
    ]
    old_formatter, buffer = handler.formatter, io.StringIO()
    old_stream = handler.setStream(buffer)
    handler.setFormatter(JsonFormatter())
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)


def test_a_record_is_one_json_object_with_the_standard_fields_and_extras(json_lines):
    logging.getLogger("sidecar.test").warning(
        "batch %s done", "b-1", extra={"batch_id": "b-1", "completed": 3}
    )
    (line,) = json_lines()
    assert list(line)[:4] == ["ts", "level", "logger", "event"]
    assert (
        line["level"] == "WARNING" and line["logger"] == "sidecar.test" and line["event"] == "batch b-1 done"
    )
    assert line["batch_id"] == "b-1" and line["completed"] == 3
    assert line["ts"].endswith("+00:00")


def test_a_sane_request_id_is_echoed_and_on_every_log_line_of_the_request(client, json_lines):
    response = client.get("/no-such-page", HTTP_X_REQUEST_ID="req-123.abc")
    assert response.status_code == 404 and response["X-Request-ID"] == "req-123.abc"
    lines = json_lines()
    access = [line for line in lines if line["logger"] == "sidecar.request"]
    assert access and access[0]["status_code"] == 404 and access[0]["path"] == "/no-such-page"
    assert {line.get("request_id") for line in lines} == {"req-123.abc"}  # django.request's too


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 200, 'quote"d', "new\nline"])
def test_a_missing_or_malformed_request_id_is_replaced(client, sent):
    headers = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}
    request_id = client.get("/healthz", **headers)["X-Request-ID"]
    assert request_id != sent and len(request_id) == 32 and int(request_id, 16) >= 0


def test_log_lines_outside_a_request_have_no_request_id(json_lines):
    logging.getLogger("sidecar.test").info("no request here")
    assert "request_id" not in json_lines()[0]


API_KEY = secrets.OPS_API_KEY
DB_PASSWORD = secrets.DATABASE_PASSWORD


@override_settings(EMBEDDING_API_KEY=API_KEY)
def test_secrets_are_scrubbed_from_messages_arguments_extras_and_tracebacks(json_lines):
    log = logging.getLogger("sidecar.test")
    log.warning("sending with key %s", API_KEY, extra={"headers": f"Authorization: Bearer {API_KEY}"})
    log.warning("upstream said: Authorization: Bearer " + secrets.UPSTREAM_BEARER + " was refused")
    log.error("cannot reach postgres://sidecar:%s@db.example.com:5432/sidecar", DB_PASSWORD)
    log.error("psycopg: host=db user=sidecar password=%s dbname=sidecar", DB_PASSWORD)
    try:
        raise RuntimeError(f"request failed with {API_KEY}")
    except RuntimeError:
        log.exception("provider call failed")
    lines = json_lines()
    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (API_KEY, DB_PASSWORD, secrets.UPSTREAM_BEARER):
        assert secret not in text
    assert lines[0]["event"] == "sending with key [redacted]"
    assert lines[0]["headers"] == "Authorization: Bearer [redacted]"
    assert "postgres://sidecar:[redacted]@db.example.com:5432/sidecar" in lines[2]["event"]
    assert "password=[redacted]" in lines[3]["event"]
    assert "RuntimeError: request failed with [redacted]" in lines[4]["exc_info"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_a_workers_batch_line_carries_its_batch_and_worker_ids(json_lines):
    SourceDocument.objects.bulk_create(SourceDocument(content=f"logged document {n}") for n in range(3))
    with QueueWorker(FakeEmbedderForQueueTests(), name="logtest") as worker:
        worker.process_one_batch()
    (batch,) = [line for line in json_lines() if line["event"].startswith("batch ")]
    assert batch["batch_id"] in batch["event"] and batch["worker_id"] == worker.worker_id
    assert batch["completed"] == 3 and batch["claimed"] == 3 and batch["failed"] == 0


@override_settings(EMBEDDING_API_KEY=API_KEY)
def test_the_suite_wide_secret_scan_sees_the_configured_handlers_lines():
    """conftest scans every line the configured handler writes for the test secrets; prove it
    is wired to that handler (a scrubbed secret passes, a leak would be recorded)."""
    from tests import conftest

    handlers = list(conftest._configured_handlers())
    assert handlers and all(h.format.__name__ == "format_and_scan" for h in handlers)
    before = len(conftest.LOG_LEAKS)
    try:
        logging.getLogger("sidecar.test").warning("calling with key %s", API_KEY)
        assert len(conftest.LOG_LEAKS) == before  # the configured key was scrubbed before writing
        raw = logging.LogRecord("sidecar.test", logging.WARNING, __file__, 1, "raw %s", (API_KEY,), None)
        handlers[0].format(raw)  # formatted past the handler's filters: the scan must catch it
        assert len(conftest.LOG_LEAKS) == before + 1 and API_KEY in conftest.LOG_LEAKS[-1]
    finally:
        del conftest.LOG_LEAKS[before:]  # this test's own planted leak must not fail the run
