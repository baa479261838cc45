from django.contrib import admin

from queue_admin.admin.base import ReadOnlyAdmin
from queue_admin.models import Worker


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = (
        "worker_id",
        "hostname",
        "pid",
        "status",
        "last_heartbeat",
        "tasks_processed",
        "error_count",
        "rate_limit_count",
    )
    list_filter = ("status", "hostname")
    search_fields = ("worker_id", "hostname")
