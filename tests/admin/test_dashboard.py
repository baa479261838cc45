"""The queue dashboard (the admin index): its figures against a known queue, estimates on big
groups, the freshness snapshot, the pause / resume button, and who may see and use it."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.db.models import Count as DbCount
from django.test import Client

from console import charts
from console.admin import dashboard as dashboard_page
from console.templatetags import sidecar_dashboard
from documents.models import SourceDocument
from documents.providers.factory import get_provider
from queue_admin import config, dashboard, freshness, limits, queue_counts, tasks
from queue_admin.models import ConfigChange, FreshnessSnapshot, QueueItem
from queue_admin.status import queue_status
from tests.helpers import set_config

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_config")]

INDEX, FIGURES, SWITCH = "/admin/", "/admin/dashboard/figures/", "/admin/dashboard/queue-switch/"


@pytest.fixture
def known_queue(sql):
    """Twelve documents queued by the trigger (pending, medium), then moved by hand:

    0 pending high, waiting 120 s (the oldest); 1 completed 5 min ago after 10 s of work, with a
    current embedding (fresh); 2 completed 30 min ago, embedded from older text (stale);
    3 completed 2 hours ago (outside the hour); 4, 5 failed low 10 min ago ("boom A");
    6 failed 2 hours ago ("boom B"); 7 processing; 8 rate limited; 9 cancelled; 10, 11 pending.
    """
    docs = SourceDocument.objects.bulk_create(
        SourceDocument(title=f"doc {n}", content=f"dashboard doc {n}") for n in range(12)
    )
    item = [QueueItem.objects.get(document=doc).id for doc in docs]

    def move(n, assignments, *params):
        sql(f"UPDATE embedding_queue SET {assignments} WHERE id = %s", [*params, item[n]])

    move(0, "priority = 'high', created_at = now() - interval '120 seconds'")
    move(1, "status = 'completed', processing_started_at = now() - interval '5 minutes 10 seconds', "
            "processing_completed_at = now() - interval '5 minutes'")  # fmt: skip
    move(2, "status = 'completed', processing_started_at = now() - interval '31 minutes', "
            "processing_completed_at = now() - interval '30 minutes'")  # fmt: skip
    move(3, "status = 'completed', processing_started_at = now() - interval '121 minutes', "
            "processing_completed_at = now() - interval '2 hours'")  # fmt: skip
    for n in (4, 5):
        move(n, "status = 'failed', priority = 'low', error_kind = 'permanent', error_message = 'boom A', "
                "updated_at = now() - interval '10 minutes'")  # fmt: skip
    move(6, "status = 'failed', error_kind = 'transient', error_message = 'boom B', "
            "updated_at = now() - interval '2 hours'")  # fmt: skip
    move(7, "status = 'processing'")
    move(8, "status = 'rate_limited'")
    move(9, "status = 'cancelled'")
    model = get_provider().model_id
    for n, text_hash in ((1, "d.content_hash"), (2, "md5('older text')")):
        sql(
            f"""INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash,
                       document_text_hash, embedding, model, token_count, created_at, updated_at)
                SELECT d.id, 0, d.content, d.content_hash, {text_hash}, array_fill(0.1, ARRAY[384])::vector,
                       %s, 3, now(), now()
                  FROM source_documents d WHERE d.id = %s""",
            [model, docs[n].id],
        )
    return docs


def database_counts() -> dict:
    rows = QueueItem.objects.order_by().values_list("status", "priority").annotate(n=DbCount("*"))
    return {(status, priority): n for status, priority, n in rows}


def test_figures_match_the_database(known_queue, sql):
    figures = dashboard.dashboard()

    expected = database_counts()
    for status in QueueItem.Status.values:
        for priority in QueueItem.Priority.values:
            count = figures.counts[status][priority]
            assert (count.value, count.estimated) == (expected.get((status, priority), 0), False)
    assert figures.counts["pending"] == {
        "high": queue_counts.Count(1), "medium": queue_counts.Count(2), "low": queue_counts.Count(0)
    }  # fmt: skip
    assert figures.by_status["completed"].value == 3 and figures.by_status["failed"].value == 3
    assert figures.by_priority["low"].value == 2
    assert (figures.live.value, figures.total.value) == (5, 12)

    assert 120 <= figures.oldest_pending_age_seconds < 180

    now_minute = sql("SELECT date_trunc('minute', statement_timestamp())")[0][0]
    assert [b.minute for b in figures.throughput] == [
        now_minute - timedelta(minutes=59 - n) for n in range(60)
    ]
    by_minute = {b.minute: b.documents for b in figures.throughput if b.documents}
    done = sql(
        """SELECT date_trunc('minute', processing_completed_at), count(*) FROM embedding_queue
            WHERE status = 'completed' AND processing_completed_at >= %s GROUP BY 1""",
        [now_minute - timedelta(minutes=59)],
    )
    assert by_minute == dict(done) and sum(by_minute.values()) == 2  # the one 2 hours ago is out

    assert (figures.completed_last_hour, figures.failed_last_hour) == (2, 2)
    assert figures.error_rate == pytest.approx(0.5)
    assert [(e.kind, e.message, e.items) for e in figures.top_errors] == [
        ("permanent", "boom A", 2),
        ("transient", "boom B", 1),
    ]
    # One completion in the last 15 minutes, 10 s of work: 0.1 documents/s; 5 live items: 50 s.
    assert figures.rate_per_second_15m == pytest.approx(0.1, rel=0.05)
    assert figures.drain_seconds == pytest.approx(50, rel=0.05)

    assert figures.documents.live and figures.documents.counted_at is None
    counts = figures.documents.counts
    assert (counts.documents, counts.fresh, counts.stale, counts.missing, counts.failed) == (12, 1, 1, 10, 3)

    assert figures.queue_enabled is True and figures.live_workers == 0
    assert figures.provider.model_id == get_provider().model_id and figures.provider.dimensions == 384
    assert figures.breaker["state"] == "not_applicable"


def test_queue_status_reads_the_same_counts(known_queue):
    figures = dashboard.dashboard()
    status = queue_status()
    by_status_and_priority = {
        name: {priority: count.value for priority, count in row.items()}
        for name, row in figures.counts.items()
    }
    assert status["counts"]["by_status_and_priority"] == by_status_and_priority
    assert status["counts"]["live"] == figures.live.value and status["counts"]["total"] == figures.total.value
    assert status["counts"]["estimated_statuses"] == []
    assert status["oldest_pending_age_seconds"] == pytest.approx(figures.oldest_pending_age_seconds, abs=2)


def test_the_page_shows_the_figures(admin_client, known_queue):
    page = admin_client.get(INDEX)
    assert page.status_code == 200
    html = page.content.decode()
    for (status, priority), n in database_counts().items():
        cell = re.search(rf'data-status="{status}" data-priority="{priority}">(.*?)</td>', html).group(1)
        assert re.sub(r"<[^>]+>", "", cell) == str(n), (status, priority, cell)
    assert re.search(r'data-status="all" data-priority="total"><strong>12<', html)
    # Time to drain: 5 live items at 1 document / 10 s, by size: the waiting texts average 15.4
    # characters ("dashboard doc 10" and "11" are longer), the one done lately 15: 51 s.
    assert "boom A" in html and "51 s" in html and "50 %" in html
    # How much is done: only document 1 is fresh. Throughput: nothing in the last minute.
    assert re.search(r'id="sidecar-embedded">1 of 12</strong> documents embedded', html)
    assert re.search(r'id="card-rate">\s*<h3>Throughput</h3>\s*<p class="sidecar-figure">0</p>', html)
    assert "in the last minute: idle; 6.0 a minute while busy" in html
    assert 'data-documents="missing">10<' in html and 'data-documents="failed">3<' in html
    assert html.count("<rect ") == 60 and "documents / min" in html and "time (UTC)" in html
    assert "Pause queue" in html and "within 5 seconds" in html
    assert "sidecar-paused-banner" not in html and "≈" not in html.split("are estimates")[1]
    # The usual list of models stays under the dashboard.
    assert "/admin/queue_admin/queueconfig/" in html


def test_big_groups_become_estimates_and_say_so(admin_client, sql, monkeypatch):
    SourceDocument.objects.bulk_create(SourceDocument(content=f"estimate doc {n}") for n in range(40))
    sql("UPDATE embedding_queue SET status = 'failed', priority = 'low', error_message = 'x' "
        "WHERE id IN (SELECT id FROM embedding_queue LIMIT 3)")  # fmt: skip
    sql("ANALYZE embedding_queue")
    monkeypatch.setattr(queue_counts, "EXACT_COUNT_LIMIT", 10)

    figures = dashboard.dashboard()
    pending = figures.counts["pending"]["medium"]
    assert pending.estimated and 20 <= pending.value <= 60 and "estimate" in pending.note
    assert figures.counts["failed"]["low"] == queue_counts.Count(3)  # small: still exact
    assert figures.live.estimated and figures.total.estimated
    assert queue_status()["counts"]["estimated_statuses"] == ["pending"]

    html = admin_client.get(INDEX).content.decode()
    cell = re.search(r'data-status="pending" data-priority="medium">(.*?)</td>', html).group(1)
    assert f"≈ {pending.value}" in cell and 'title="Estimate: planner' in cell
    assert re.search(r'data-status="failed" data-priority="low"><a [^>]+>3</a>', html)


def test_statistics_older_than_the_table_give_a_marked_lower_bound(sql, monkeypatch):
    sql("ANALYZE embedding_queue")  # empty: the planner expects next to nothing
    SourceDocument.objects.bulk_create(SourceDocument(content=f"bulk {n}") for n in range(30))
    monkeypatch.setattr(queue_counts, "EXACT_COUNT_LIMIT", 10)
    with connection.cursor() as cursor:
        count = queue_counts.count_rows(cursor, queue_counts.GROUP, ["pending", "medium"])
    assert (count.value, count.estimated, count.at_least) == (10, True, True)
    assert "out of date" in count.note
    assert str(sidecar_dashboard.count(count)).endswith("&gt; 10</span>")


def test_documents_are_counted_from_the_snapshot_on_big_tables(admin_client, known_queue, monkeypatch):
    monkeypatch.setattr(freshness, "LIVE_COUNT_LIMIT", 5)
    figures = dashboard.dashboard()
    assert figures.documents.counts is None
    assert "Not counted yet" in admin_client.get(INDEX).content.decode()

    # The 5-minute schedule: queues what the triggers missed (2, stale; 3, missing), then counts.
    assert tasks.reconcile() == 2
    snapshot = FreshnessSnapshot.objects.get(model=get_provider().model_id)
    assert (snapshot.fresh, snapshot.stale, snapshot.missing, snapshot.documents) == (1, 1, 10, 12)
    # Held for a person, not queued again: the failed 4, 5, 6 and the cancelled 9.
    assert (snapshot.failed, snapshot.cancelled) == (3, 1)
    figures = dashboard.dashboard()
    assert figures.documents.counts.missing == 10 and figures.documents.counted_at == snapshot.counted_at
    assert "As of" in admin_client.get(INDEX).content.decode()

    FreshnessSnapshot.objects.update(model="another-model")  # a snapshot of another model says nothing
    assert dashboard.dashboard().documents.counts is None


def test_breakers_and_quota_use_per_provider(admin_client):
    # The quota is a one-minute sliding window, so the figures hold still for the second or so
    # this test takes even on a loaded machine.
    set_config(api_quota_per_minute=6, token_quota_per_minute=600)
    queue_settings = config.current()
    limits.record_failure("remote-model", "timed out", threshold=1)
    assert limits.acquire("remote-model", 2, 500, rpm=queue_settings.api_quota_per_minute,
                          tpm=queue_settings.token_quota_per_minute) == 0  # fmt: skip
    [provider] = dashboard.dashboard().provider_limits
    assert provider.key == "remote-model" and not provider.in_use
    assert provider.breaker.state == "open" and provider.breaker.failures == 1
    assert provider.quota.requests_used == pytest.approx(2, abs=0.1)
    assert provider.quota.tokens_used == pytest.approx(500, abs=20)
    assert provider.quota.requests_quota == queue_settings.api_quota_per_minute
    html = admin_client.get(INDEX).content.decode()
    assert (
        "remote-model" in html
        and "timed out" in html
        and "2 / 6<" in html.replace("</td>", "<").replace("\n", "")
    )


def test_an_empty_database_renders(admin_client, sql):
    sql(
        "TRUNCATE source_documents, embedding_queue, embedding_provider_state, embedding_queue_workers CASCADE"
    )
    figures = dashboard.dashboard()
    assert figures.total.value == 0 and figures.oldest_pending_age_seconds is None
    assert figures.error_rate is None and figures.drain_seconds == 0 and figures.top_errors == []
    for url in (INDEX, FIGURES):
        page = admin_client.get(url)
        assert page.status_code == 200, url
    html = page.content.decode()
    assert "No failed items" in html and "nothing to do" in html and html.count("<rect ") == 60


def test_the_vector_index_of_the_model_in_use_and_what_search_uses(admin_client, settings):
    import numpy as np
    from django.db import transaction

    from documents import sidecar, vector_index

    settings.VECTOR_INDEX_MIN_ROWS = 3
    model = get_provider().model_id
    documents = SourceDocument.objects.bulk_create(SourceDocument(content=f"text {n}") for n in range(4))
    vector = np.full(settings.EMBEDDING_DIMENSIONS, 0.05, dtype=np.float32)
    with transaction.atomic():
        sidecar.replace_chunks(
            {d.id: ("h", [sidecar.Chunk(0, d.content, "h", vector, 2)]) for d in documents}, model
        )

    html = admin_client.get(FIGURES).content.decode()
    assert f'<code id="sidecar-search-model">{model}</code>' in html
    assert "no HNSW index yet (4 chunks): one is due" in html and 'class="sidecar-index-none"' in html

    with connection.cursor() as cursor:  # the deferred foreign key checks first: DDL refuses pending ones
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    vector_index.build(model, concurrently=False)  # inside the test's transaction
    html = admin_client.get(FIGURES).content.decode()
    assert 'class="sidecar-index-ready"' in html and "HNSW index ready (4 chunks" in html


def test_the_fragment_is_the_figures_alone(admin_client, known_queue):
    html = admin_client.get(FIGURES).content.decode()
    assert 'data-status="pending"' in html and "<html" not in html and "boom A" in html


def test_the_chart_scales_and_labels_its_bars():
    Bucket = type("Bucket", (), {})
    buckets = []
    from datetime import UTC, datetime

    for n in range(60):
        bucket = Bucket()
        bucket.minute, bucket.documents = datetime(2026, 1, 1, 12, n, tzinfo=UTC), (130 if n == 59 else n % 3)
        buckets.append(bucket)
    svg = str(charts.throughput_chart(buckets))
    assert svg.startswith("<svg") and svg.count("<rect ") == 60 and svg.count("<title>") == 60
    assert "<title>12:59 UTC: 130 documents</title>" in svg
    assert ">200</text>" in svg and ">100</text>" in svg  # axis top: the next 1/2/5 step above 130
    assert ">12:00</text>" in svg and ">12:45</text>" in svg
    assert [charts.nice_ceiling(v) for v in (0, 1, 3, 10, 11, 130, 999)] == [1, 1, 5, 10, 20, 200, 1000]


# --- who may see and use it -------------------------------------------------------------------


@pytest.fixture
def viewer(db):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_queueitem"))
    return user


@pytest.fixture
def operator(db):
    from django.contrib.auth.models import Group

    user = User.objects.create_user("queue-operator", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Queue operators"))
    return user


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_visitors_are_sent_to_log_in(client):
    for url, method in ((INDEX, client.get), (FIGURES, client.get), (SWITCH, client.post)):
        response = method(url, {"queue_enabled": "off"}) if method == client.post else method(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    assert config.current().queue_enabled is True


def test_staff_without_permission_get_the_normal_index_and_nothing_else(nobody_staff, known_queue):
    client = client_for(nobody_staff)
    page = client.get(INDEX)
    html = page.content.decode()
    assert page.status_code == 200 and "permission" in html.lower()
    assert "sidecar-dashboard" not in html and "boom A" not in html
    assert client.get(FIGURES).status_code == 403
    assert client.post(SWITCH, {"queue_enabled": "off"}).status_code == 403
    assert config.current().queue_enabled is True and not ConfigChange.objects.exists()


def test_viewers_see_the_dashboard_but_no_button_and_cannot_pause(viewer):
    client = client_for(viewer)
    html = client.get(INDEX).content.decode()
    assert "sidecar-dashboard" in html and "Pause queue" not in html
    assert client.get(FIGURES).status_code == 200
    assert client.post(SWITCH, {"queue_enabled": "off"}).status_code == 403
    assert config.current().queue_enabled is True


def test_an_operator_pauses_and_resumes_the_queue_with_history(operator):
    client = client_for(operator)
    response = client.post(SWITCH, {"queue_enabled": "off"}, follow=True)
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == INDEX
    assert config.current().queue_enabled is False
    change = ConfigChange.objects.get()
    assert (change.config_key, change.old_value, change.new_value) == ("queue_enabled", True, False)
    assert change.changed_by == operator
    assert "sidecar-paused-banner" in html and "Queue paused" in html and "within 5 seconds" in html
    assert "Resume queue" in html

    html = client.post(SWITCH, {"queue_enabled": "off"}, follow=True).content.decode()
    assert "already paused" in html and ConfigChange.objects.count() == 1

    html = client.post(SWITCH, {"queue_enabled": "on"}, follow=True).content.decode()
    assert config.current().queue_enabled is True and "sidecar-paused-banner" not in html
    assert list(ConfigChange.objects.values_list("new_value", flat=True)) == [True, False]


@pytest.mark.parametrize("data", [{}, {"queue_enabled": "maybe"}, {"queue_enabled": "x" * 10_000}])
def test_a_bad_switch_request_changes_nothing_and_says_so(operator, data):
    response = client_for(operator).post(SWITCH, data, follow=True)
    assert response.status_code == 200 and "Nothing changed" in response.content.decode()
    assert config.current().queue_enabled is True and not ConfigChange.objects.exists()


def test_the_switch_only_answers_post(operator):
    assert client_for(operator).get(SWITCH).status_code == 405


def test_the_switch_needs_the_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.post(SWITCH, {"queue_enabled": "off"}).status_code == 403
    assert config.current().queue_enabled is True


def test_the_page_module_is_listed_in_the_site():
    from console.admin_site import PAGE_MODULES

    assert dashboard_page.__name__ in PAGE_MODULES


def test_throughput_falls_to_zero_within_a_minute_of_the_last_completion(sql):
    doc = SourceDocument.objects.create(content="one")
    sql(
        """UPDATE embedding_queue SET status = 'completed', processing_started_at = now() - interval '40 seconds',
                  processing_completed_at = now() - interval '30 seconds' WHERE document_id = %s""",
        [doc.id],
    )
    assert dashboard.completed_last_minute() == 1
    sql(
        "UPDATE embedding_queue SET processing_completed_at = now() - interval '61 seconds' WHERE document_id = %s",
        [doc.id],
    )
    assert dashboard.completed_last_minute() == 0
    assert dashboard.dashboard().rate_per_second_15m  # the 15 minutes' pace is still known, for the estimate


def test_time_to_drain_counts_the_length_of_the_waiting_texts(sql):
    done = SourceDocument.objects.create(content="x" * 100)
    sql(
        """UPDATE embedding_queue SET status = 'completed', processing_started_at = now() - interval '20 seconds',
                  processing_completed_at = now() - interval '10 seconds' WHERE document_id = %s""",
        [done.id],
    )
    SourceDocument.objects.bulk_create(
        SourceDocument(content="y" * 1_000) for _ in range(3)
    )  # ten times as long
    figures = dashboard.dashboard()
    assert figures.text_sizes.ratio == 10.0
    assert figures.drain_seconds == pytest.approx(3 / figures.rate_per_second_15m * 10)


def test_the_dashboard_says_which_mode_the_queue_is_in(admin_client):
    from queue_admin import config

    html = admin_client.get(FIGURES).content.decode()
    assert re.search(r'id="sidecar-queue-mode"[^>]*>Custom</a>', html)  # the seed: batch 32, two workers
    config.apply_preset(
        "marathon",
        loaded={key: getattr(config.current(), key) for key in ("batch_size", "max_concurrent_workers")},
    )
    config.forget_cached()
    html = admin_client.get(FIGURES).content.decode()
    assert re.search(r'id="sidecar-queue-mode"[^>]*>Marathon</a>', html)
