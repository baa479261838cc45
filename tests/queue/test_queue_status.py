"""`queue_status` against known queue rows: the service's figures and the command's output."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from documents.models import SourceDocument
from documents.providers.factory import get_provider
from queue_admin.models import QueueItem, Worker

pytestmark = pytest.mark.usefixtures("seeded_config")

KEYS = {
    "version",
    "generated_at",
    "queue_enabled",
    "provider_model_id",
    "counts",
    "oldest_pending_age_seconds",
    "throughput_per_second_15m",
    "live_workers",
    "late_workers",
    "dead_workers_last_hour",
    "breaker",
    "documents_at_provider_batch_api",
}


@pytest.fixture
def known_queue(db, sql):
    """Five documents queued by the trigger (pending, medium), then moved by hand: one high
    pending item waiting 60 s, one completed 10 s after it started, one failed low."""
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"status doc {n}") for n in range(5))
    item = {doc.id: QueueItem.objects.get(document=doc).id for doc in docs}
    sql("UPDATE embedding_queue SET priority = 'high', created_at = now() - interval '60 seconds' WHERE id = %s",
        [item[docs[0].id]])  # fmt: skip
    sql(
        """UPDATE embedding_queue SET status = 'completed', processing_started_at = now() - interval '10 seconds',
                  processing_completed_at = now() WHERE id = %s""",
        [item[docs[1].id]],
    )
    sql("UPDATE embedding_queue SET status = 'failed', priority = 'low' WHERE id = %s", [item[docs[2].id]])
    Worker.objects.create(worker_id="host:1:status", hostname="host", pid=1)
    Worker.objects.create(worker_id="host:2:gone", hostname="host", pid=2, status=Worker.Status.FINISHED)


def run(*args) -> str:
    out = StringIO()
    call_command("queue_status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.usefixtures("known_queue")
def test_json_has_the_documented_keys_and_matches_the_database():
    status = json.loads(run("--json"))
    assert set(status) == KEYS and status["version"] == 1
    counts = status["counts"]
    assert counts["by_status"] == {
        "pending": 3, "processing": 0, "completed": 1, "failed": 1, "rate_limited": 0, "cancelled": 0,
    }  # fmt: skip
    assert counts["by_status_and_priority"]["pending"] == {"high": 1, "medium": 2, "low": 0}
    assert counts["by_status_and_priority"]["failed"] == {"high": 0, "medium": 0, "low": 1}
    assert counts["live"] == 3 and counts["total"] == 5 == QueueItem.objects.count()
    assert 60 <= status["oldest_pending_age_seconds"] < 120
    assert status["throughput_per_second_15m"] == pytest.approx(0.1, rel=0.05)
    assert status["live_workers"] == 1
    assert status["queue_enabled"] is True
    assert status["provider_model_id"] == get_provider().model_id
    assert status["breaker"]["state"] == "not_applicable" and status["breaker"]["applicable"] is False


def test_an_empty_queue_reports_nulls_not_errors(db):
    status = json.loads(run("--json"))
    assert status["counts"]["total"] == 0
    assert status["oldest_pending_age_seconds"] is None and status["throughput_per_second_15m"] is None
    assert status["live_workers"] == 0


@pytest.mark.usefixtures("known_queue")
def test_the_text_form_shows_the_figures():
    text = run()
    assert "live workers: 1" in text and "not applicable" in text
    assert "pending" in text and "3 / 5" in text.replace("  ", " ").split("live / total")[1]


@pytest.mark.usefixtures("known_queue")
def test_watch_refreshes_until_stopped():
    lines = run("--json", "--watch", "--interval", "0.01", "--iterations", "3").splitlines()
    assert len(lines) == 3 and all(json.loads(line)["counts"]["total"] == 5 for line in lines)
