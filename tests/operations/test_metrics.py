"""GET /metrics: access (token, allow-list, unset token), the exposition against known rows of
the real database, and a database that cannot be read (sidecar_up 0, never a 500)."""

import pytest
from django.db import OperationalError

from documents.models import SourceDocument
from queue_admin import limits, status
from queue_admin.models import QueueItem, Worker
from tests import secrets
from tests.helpers import AUTH, samples

TOKEN = secrets.METRICS_TOKEN


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", TOKEN])
def test_a_missing_or_wrong_token_gets_401_and_no_figures(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"sidecar_" not in response.content


def test_without_metrics_token_set_metrics_is_off_with_403_saying_how_to_turn_it_on(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403
    assert b"set METRICS_TOKEN" in response.content


@pytest.mark.django_db
@pytest.mark.usefixtures("seeded_config")
def test_the_allow_list_is_checked_before_the_token(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", **AUTH).status_code == 403  # the test client is 127.0.0.1
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "127.0.0.0/8"]
    assert client.get("/metrics", **AUTH).status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("seeded_config")
def test_the_exposition_parses_and_matches_the_queue_workers_and_breaker(client):
    SourceDocument.objects.bulk_create(SourceDocument(title=f"d{i}", content=f"text {i}") for i in range(3))
    QueueItem.objects.filter(document__title="d0").update(priority=QueueItem.Priority.HIGH)
    Worker.objects.create(
        worker_id="host:1:drain:abc",
        hostname="host",
        pid=1,
        tasks_processed=7,
        error_count=2,
        rate_limit_count=1,
    )
    Worker.objects.create(
        worker_id="host:2:drain:old", hostname="host", pid=2, status=Worker.Status.FINISHED, tasks_processed=5
    )
    assert limits.record_failure("text-embedding-3-small", "timed out", threshold=1) == "open"

    figures = samples(client.get("/metrics", **AUTH))

    assert figures[("sidecar_up", ())] == 1
    assert figures[("sidecar_queue_items", (("priority", "medium"), ("status", "pending")))] == 2
    assert figures[("sidecar_queue_items", (("priority", "high"), ("status", "pending")))] == 1
    assert figures[("sidecar_queue_items", (("priority", "low"), ("status", "failed")))] == 0
    assert 0 <= figures[("sidecar_queue_oldest_pending_age_seconds", ())] < 60
    assert figures[("sidecar_queue_completed_per_second_15m", ())] == 0
    assert figures[("sidecar_queue_enabled", ())] == 1
    assert figures[("sidecar_workers_live", ())] == 1
    worker = (("worker_id", "host:1:drain:abc"),)
    assert 0 <= figures[("sidecar_worker_last_heartbeat_age_seconds", worker)] < 60
    assert figures[("sidecar_worker_tasks_processed_total", worker)] == 7
    assert figures[("sidecar_worker_errors_total", worker)] == 2
    assert figures[("sidecar_worker_rate_limited_total", worker)] == 1
    # Stopped workers get no series of their own. All-time totals are not sums of registry
    # rows (clearing dead workers in the admin would make them fall): they are
    # sidecar_documents_total and friends, kept apart (test_worker_counters_and_histograms_...).
    assert not any(labels == (("worker_id", "host:2:drain:old"),) for _name, labels in figures)
    assert {name for name, _ in figures if name.startswith("sidecar_workers_")} == {
        "sidecar_workers_live", "sidecar_workers_late", "sidecar_workers_dead_last_hour",
    }  # fmt: skip
    assert figures[("sidecar_workers_late", ())] == 0 and figures[("sidecar_workers_dead_last_hour", ())] == 0
    provider = (("provider", "text-embedding-3-small"),)
    assert figures[("sidecar_provider_breaker_state", provider)] == 2
    assert figures[("sidecar_provider_consecutive_failures", provider)] == 1
    assert figures[("sidecar_scrape_duration_seconds", ())] >= 0


@pytest.mark.django_db
@pytest.mark.usefixtures("seeded_config")
def test_a_paused_queue_and_a_recovering_breaker_show_up(client):
    from tests.helpers import set_config

    set_config(queue_enabled=False)
    limits.record_failure("tei-a", "boom", threshold=1)
    limits.breaker_allows("tei-a", recovery_seconds=0)  # the trial: open -> half_open
    limits.record_failure("tei-b", "boom", threshold=5)  # one failure: still closed
    figures = samples(client.get("/metrics", **AUTH))
    assert figures[("sidecar_queue_enabled", ())] == 0
    assert figures[("sidecar_provider_breaker_state", (("provider", "tei-a"),))] == 1
    assert figures[("sidecar_provider_breaker_state", (("provider", "tei-b"),))] == 0
    assert figures[("sidecar_workers_live", ())] == 0


@pytest.mark.django_db
def test_an_unreadable_database_answers_200_with_sidecar_up_0_not_a_500(client, monkeypatch, caplog):
    def refused():
        raise OperationalError('connection failed: password="hunter2-secret" refused')

    monkeypatch.setattr(status, "queue_status", refused)
    response = client.get("/metrics", **AUTH)
    figures = samples(response)
    assert figures[("sidecar_up", ())] == 0
    assert {name for name, _labels in figures} == {"sidecar_up", "sidecar_scrape_duration_seconds"}
    assert "could not be read" in caplog.text and "hunter2-secret" not in caplog.text


@pytest.mark.django_db
@pytest.mark.usefixtures("seeded_config")
def test_recent_completions_give_the_15_minute_rate(client, sql):
    SourceDocument.objects.bulk_create(SourceDocument(title=f"d{i}", content=f"text {i}") for i in range(2))
    sql(
        """UPDATE embedding_queue SET status = 'completed',
                  processing_started_at = statement_timestamp() - interval '10 seconds',
                  processing_completed_at = statement_timestamp()"""
    )
    figures = samples(client.get("/metrics", **AUTH))
    assert figures[("sidecar_queue_completed_per_second_15m", ())] == pytest.approx(0.2, abs=0.001)
    assert figures[("sidecar_queue_items", (("priority", "medium"), ("status", "completed")))] == 2
    assert figures[("sidecar_queue_oldest_pending_age_seconds", ())] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_worker_counters_and_histograms_move_after_a_batch(client):
    """What workers did reaches /metrics through the database: the counters and histograms
    `queue_admin/worker_metrics.py` keeps, whichever process scrapes."""
    from documents.providers.base import EmbeddingError
    from queue_admin.worker import QueueWorker
    from tests.fakes import FakeEmbedderForQueueTests
    from tests.helpers import set_config

    before = samples(client.get("/metrics", **AUTH))
    assert before[("sidecar_tokens_sent_total", ())] == 0
    assert before[("sidecar_batch_duration_seconds_count", ())] == 0

    set_config(batch_size=5)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"fine document number {n}") for n in range(9))
    SourceDocument.objects.create(content="POISON text")
    embedder = FakeEmbedderForQueueTests(fail_on={"POISON": EmbeddingError("bad input", kind="permanent")})
    with QueueWorker(embedder, name="metrics-test") as worker:
        report = worker.run()
    assert (report.completed, report.failed) == (9, 1)

    after = samples(client.get("/metrics", **AUTH))
    assert after[("sidecar_documents_total", (("outcome", "embedded"),))] == 9
    assert after[("sidecar_documents_total", (("outcome", "failed"),))] == 1
    assert after[("sidecar_item_failures_total", (("kind", "permanent"),))] == 1
    assert after[("sidecar_texts_embedded_total", ())] == len(embedder.texts_sent) == 9
    assert after[("sidecar_tokens_sent_total", ())] == sum(len(t.split()) for t in embedder.texts_sent)
    # Two batches of 5; the provider was asked once per sub-batch, and once more per text
    # of the sub-batch that failed (a bad document fails alone).
    assert after[("sidecar_batch_duration_seconds_count", ())] == 2
    assert after[("sidecar_batch_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    requests = after[("sidecar_provider_request_duration_seconds_count", ())]
    assert requests == embedder.calls
    assert (
        after[("sidecar_provider_requests_total", (("result", "ok"),))]
        + after[("sidecar_provider_requests_total", (("result", "permanent"),))]
        == embedder.calls
    )
    assert after[("sidecar_batch_duration_seconds_sum", ())] > 0


@pytest.mark.django_db(transaction=True)
def test_counts_a_flush_could_not_write_are_kept_for_the_next(client, monkeypatch):
    """A worker flushes after a failure, often with the database away: those counts are added
    by the next flush that reaches it, not lost (and not counted twice)."""
    from queue_admin import worker_metrics

    recorder = worker_metrics.Recorder()
    recorder.inc("sidecar_texts_embedded", 7)

    class DatabaseAway:
        def cursor(self):
            raise OperationalError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(worker_metrics, "connection", DatabaseAway())
        with pytest.raises(OperationalError):
            recorder.flush()
    recorder.inc("sidecar_texts_embedded", 2)
    recorder.flush()
    recorder.flush()  # nothing left: adds nothing
    assert samples(client.get("/metrics", **AUTH))[("sidecar_texts_embedded_total", ())] == 9
