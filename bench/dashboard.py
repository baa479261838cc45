"""Scenario `dashboard`: the admin dashboard's server time on a big queue and documents table.

Steps: empty the tables; load N documents and N queue items (one per document) with set-based
SQL (INSERT … SELECT generate_series, the enqueue triggers disabled for the load, as a bulk
import would), spread over the states a busy day leaves: 70 % completed over the last 24 hours,
25 % pending, 3 % failed with a handful of messages, 2 % cancelled, a few processing and rate
limited; embed a few thousand documents (fresh and stale); VACUUM ANALYZE, as autovacuum would
after a load; take the freshness snapshot the reconciliation schedule keeps (timed: it runs
every 5 minutes, not per page load). Then time `dashboard()` (the service) and a full GET of
/admin/ through Django's test Client, LOADS times each after a warm-up: median and p95; and the
p95 of the admin's big lists (queue items, pending items, dead letters, documents). For
scale, one exact GROUP BY count of the queue, which the pages avoid.
"""

import time

from bench import common

DEFAULT_SIZE = 1_000_000
QUICK_SIZE = 2_000
LOADS = 20
TARGET_MS = 300
EMBEDDED_SHARE = 0.002  # documents given a sidecar row: enough to show fresh and stale
ERRORS = [
    "HTTP 400: input is too long for the model",
    "HTTP 503: upstream unavailable",
    "connection timed out after 30 s",
    "wrong dimensions: expected 384, got 768",
    "HTTP 422: invalid input",
]

# Document g has the id 00000000-0000-0000-0000-<g in hex>, so queue rows find it without a join.
DOCUMENT_ID = "('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid"

LOAD_DOCUMENTS = f"""
INSERT INTO source_documents (id, title, content, metadata, created_at, updated_at)
SELECT {DOCUMENT_ID}, 'Document ' || g,
       'Document ' || g || ' about refunds, shipping and the returns policy of order ' || (g * 7919 %% 100000),
       '{{}}'::jsonb, now() - interval '2 days', now() - interval '2 days'
  FROM generate_series(1, %(n)s::bigint) g
"""

# Per row g: a fraction f = (g * a prime mod 10000) / 10000 spreads states evenly and repeatably.
# (`%%` is a literal % in a statement with parameters.)
LOAD_QUEUE = f"""
INSERT INTO embedding_queue (id, document_id, operation, status, priority, retry_count, max_retries,
       next_attempt_at, error_kind, error_message, worker_id, estimated_tokens, rate_limit_delay_ms, metadata,
       processing_started_at, processing_completed_at, lease_expires_at, created_at, updated_at)
SELECT gen_random_uuid(), {DOCUMENT_ID}, 'embed', s.status,
       CASE WHEN g %% 20 = 0 THEN 'high' WHEN g %% 5 < 3 THEN 'medium' ELSE 'low' END,
       CASE WHEN s.status = 'failed' THEN 4 ELSE 0 END, 3, now(),
       CASE WHEN s.status = 'failed' THEN 'permanent' WHEN s.status = 'rate_limited' THEN 'rate_limited' ELSE '' END,
       CASE WHEN s.status = 'failed' THEN (%(errors)s::text[])[1 + g %% %(error_count)s] ELSE '' END,
       CASE WHEN s.status = 'processing' THEN 'bench-host:1:drain:x' ELSE '' END, 30, 0, '{{}}'::jsonb,
       CASE WHEN s.status IN ('completed', 'processing') THEN s.at - interval '2 seconds' END,
       CASE WHEN s.status = 'completed' THEN s.at END,
       CASE WHEN s.status = 'processing' THEN now() + interval '5 minutes' END,
       s.at - interval '10 minutes', s.at
  FROM generate_series(1, %(n)s::bigint) g
 CROSS JOIN LATERAL (
       SELECT (g * 7919 %% 10000) / 10000.0 AS f,
              now() - make_interval(secs => (g * 104729 %% 86400)) AS at
 ) spread
 CROSS JOIN LATERAL (
       SELECT CASE WHEN f < 0.70 THEN 'completed' WHEN f < 0.95 THEN 'pending' WHEN f < 0.98 THEN 'failed'
                   WHEN f < 0.9995 THEN 'cancelled' WHEN f < 0.9998 THEN 'processing' ELSE 'rate_limited' END
                  AS status,
              spread.at
 ) s
"""

# Random vectors (the HNSW index is built row by row on insert; identical vectors would make a
# degenerate graph); `0 * g` makes the subquery run per row, `0 * i` keeps array_agg in it.
# Even g: current text (fresh); odd g: older text (stale).
LOAD_EMBEDDINGS = f"""
INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash, document_text_hash,
       embedding, model, token_count, created_at, updated_at)
SELECT d.id, 0, d.content, d.content_hash, CASE WHEN g %% 2 = 0 THEN d.content_hash ELSE md5('older') END,
       (SELECT array_agg(random() + 0 * i + 0 * g) FROM generate_series(1, %(dimensions)s) i)::vector,
       %(model)s, 30, now(), now()
  FROM generate_series(1, %(n)s::bigint) g JOIN source_documents d ON d.id = {DOCUMENT_ID}
"""

EXACT_GROUP_COUNT = "SELECT status, priority, count(*) FROM embedding_queue GROUP BY 1, 2"


def load(size: int, model: str, dimensions: int) -> dict:
    """Fill the tables; returns the seconds each step took."""
    from django.db import connection, transaction

    seconds = {}
    with connection.cursor() as cursor:
        started = time.perf_counter()
        with transaction.atomic():
            # A bulk import with the enqueue triggers off (the reconciliation schedule exists for
            # exactly this); the queue rows are written below, in the states being measured.
            cursor.execute("ALTER TABLE source_documents DISABLE TRIGGER USER")
            cursor.execute(LOAD_DOCUMENTS, {"n": size})
            cursor.execute("ALTER TABLE source_documents ENABLE TRIGGER USER")
        seconds["load_documents_s"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute(LOAD_QUEUE, {"n": size, "errors": ERRORS, "error_count": len(ERRORS)})
        seconds["load_queue_s"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute(
            LOAD_EMBEDDINGS,
            {"n": max(2, round(size * EMBEDDED_SHARE)), "model": model, "dimensions": dimensions},
        )
        seconds["load_embeddings_s"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE source_documents, embedding_queue, document_embeddings")
        seconds["vacuum_analyze_s"] = time.perf_counter() - started
    return seconds


def timed(function, loads: int) -> list[float]:
    function()  # warm-up: connection, templates, the provider object
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


# The admin's big lists on the same tables (first page, default order), p95 of LOADS each.
LIST_PAGES = {
    "queue_items": "/admin/queue_admin/queueitem/",
    "queue_pending": "/admin/queue_admin/queueitem/?status__exact=pending",
    "dead_letters": "/admin/queue_admin/deadletter/",
    "documents": "/admin/documents/sourcedocument/",
}


def time_list_pages(client, result: common.ScenarioResult) -> None:
    for key, url in LIST_PAGES.items():

        def get_list(url=url):
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url} answered {response.status_code}")

        p95 = common.percentile([t * 1000 for t in timed(get_list, LOADS)], 95)
        result.add(f"list_{key}_p95_ms", f"GET {url}, p95", p95, "ms", f"< {TARGET_MS}", p95 < TARGET_MS)


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from documents.providers.factory import get_provider
    from queue_admin import dashboard, freshness, queue_counts

    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    provider = get_provider()
    result = common.ScenarioResult(
        "dashboard",
        f"{size:,} generated documents and {size:,} queue items (one per document)",
        {
            "documents": size,
            "queue_items": size,
            "loads": LOADS,
            "exact_count_limit": queue_counts.EXACT_COUNT_LIMIT,
            "live_freshness_limit": freshness.LIVE_COUNT_LIMIT,
        },
    )
    common.empty_tables()
    result.metrics.update(load(size, provider.model_id, provider.dimensions))

    started = time.perf_counter()
    freshness.refresh_snapshot(provider.model_id)
    result.add(
        "snapshot_s", "freshness snapshot (reconciliation, every 5 min)", time.perf_counter() - started, "s"
    )

    service_ms = [t * 1000 for t in timed(dashboard.dashboard, LOADS)]
    user, _ = User.objects.get_or_create(
        username="bench-dashboard", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    def get_page():
        response = client.get("/admin/")
        if response.status_code != 200:
            raise RuntimeError(f"GET /admin/ answered {response.status_code}")

    page_ms = [t * 1000 for t in timed(get_page, LOADS)]
    for key, label, values in (
        ("service", "dashboard() service", service_ms),
        ("page", "GET /admin/", page_ms),
    ):
        p50, p95 = common.median(values), common.percentile(values, 95)
        result.add(f"{key}_p50_ms", f"{label}, median", p50, "ms", f"< {TARGET_MS}", p50 < TARGET_MS)
        result.add(f"{key}_p95_ms", f"{label}, p95", p95, "ms", f"< {TARGET_MS}", p95 < TARGET_MS)
    result.metrics["service_ms"] = service_ms
    result.metrics["page_ms"] = page_ms
    time_list_pages(client, result)

    figures = dashboard.dashboard()
    estimated = sorted(name for name, count in figures.by_status.items() if count.estimated)
    result.metrics["estimated_statuses"] = estimated
    result.metrics["documents_counted"] = "live" if figures.documents.live else "from the snapshot"
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(EXACT_GROUP_COUNT)
        exact = {(status, priority): n for status, priority, n in cursor.fetchall()}
    result.add(
        "exact_count_ms",
        "for scale: exact COUNT(*) by status, priority",
        (time.perf_counter() - started) * 1000,
        "ms",
    )
    errors = [
        abs(count.value - exact.get((status, priority), 0)) / max(exact.get((status, priority), 0), 1)
        for status, row in figures.counts.items()
        for priority, count in row.items()
        if count.estimated
    ]
    if errors:
        result.add("estimate_error_max", "estimated groups: largest error vs exact", max(errors) * 100, "%")
    common.empty_tables()
    return result
