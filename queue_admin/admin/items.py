from django.contrib import admin

from queue_admin.admin.base import ReadOnlyAdmin
from queue_admin.models import QueueItem


@admin.register(QueueItem)
class QueueItemAdmin(ReadOnlyAdmin):
    list_display = (
        "document",
        "status",
        "priority",
        "retry_count",
        "error_kind",
        "worker_id",
        "next_attempt_at",
        "updated_at",
    )
    list_filter = ("status", "priority", "error_kind")
    search_fields = ("=document__id", "document__title", "=id")
    list_select_related = ("document",)
    raw_id_fields = ("document",)
    ordering = ("-created_at",)
