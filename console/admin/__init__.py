"""The admin, one module per page. Documents: their list (with chunks, the re-embed action and
the backfill page), the sidecar's embedding rows (read-only, never the whole vector), API
tokens, the site-wide search page, sources (attaching a table, its figures and actions). The
queue: items (and their dead-letter / stuck lists), workers, settings, provider limits, provider
batches (the Batch API), the dashboard. Machine-owned rows are read-only; people change them through actions that call
services. Also two third-party lists made safe: django-q2's schedules (`schedules`) and
django-axes' failed logins (`login_attempts`)."""

from console.admin import (  # noqa: F401 - registers them
    documents,
    embeddings,
    items,
    login_attempts,
    provider_batches,
    providers,
    schedules,
    settings,
    sources,
    tokens,
    workers,
)
