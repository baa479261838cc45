"""The queue's admin, one module per page: queue items (and their dead-letter / stuck lists),
workers, settings, provider limits. Machine-owned rows are read-only; people change them
through actions that call services (CONVENTIONS 7). Also two third-party lists made safe:
django-q2's schedules (`schedules`) and django-axes' failed logins (`login_attempts`)."""

from queue_admin.admin import (  # noqa: F401 - registers them
    items,
    login_attempts,
    providers,
    schedules,
    settings,
    workers,
)
