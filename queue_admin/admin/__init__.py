"""The queue's admin, one module per page: queue items (and their dead-letter / stuck lists),
workers, settings, provider limits. Machine-owned rows are read-only; people change them
through actions that call services (CONVENTIONS 7)."""

from queue_admin.admin import items, providers, schedules, settings, workers  # noqa: F401 - registers them
