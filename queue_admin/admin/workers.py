"""Workers: who is alive, how late each heartbeat is, what each one did. Rows are written by
the workers themselves; people only clear the rows of dead ones."""

from django.contrib import admin
from django.db.models import F
from django.db.models.functions import Now
from django.utils.html import format_html

from queue_admin import config, operations, registry
from queue_admin.admin.base import ReadOnlyAdmin, report
from queue_admin.models import Worker

# Late after this many heartbeat intervals of silence; dead (as the workers judge it, see
# registry.SILENT_INTERVALS_BEFORE_STOPPED) after three.
LATE_AFTER_INTERVALS = 1.5


def heartbeat_health(worker, age_seconds: float, interval_seconds: float) -> str:
    """ "ok", "late" or "dead" for a worker whose last heartbeat is `age_seconds` old."""
    if worker.status in (Worker.Status.STOPPED, Worker.Status.ERROR):
        return "dead"
    if age_seconds > interval_seconds * registry.SILENT_INTERVALS_BEFORE_STOPPED:
        return "dead"
    if age_seconds > interval_seconds * LATE_AFTER_INTERVALS:
        return "late"
    return "ok"


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    list_display = (
        "worker_id",
        "hostname",
        "pid",
        "status",
        "heartbeat",
        "current_batch_id",
        "tasks_processed",
        "error_count",
        "rate_limit_count",
        "throughput",
    )
    list_filter = ("status", "hostname")
    search_fields = ("worker_id", "hostname")
    ordering = ("-last_heartbeat",)
    actions = ["clear_dead"]

    def get_queryset(self, request):
        # The heartbeat's age on the database's clock, the one the workers stamp it with.
        return super().get_queryset(request).annotate(heartbeat_age=Now() - F("last_heartbeat"))

    def has_operate_permission(self, request):
        return request.user.has_perm("queue_admin.operate_queueitem")

    @admin.display(description="heartbeat", ordering="-last_heartbeat")
    def heartbeat(self, obj):
        age = obj.heartbeat_age.total_seconds()
        health = heartbeat_health(obj, age, config.current()["worker_heartbeat_interval_ms"] / 1000)
        return format_html(
            '<span class="sidecar-heartbeat {}" title="last heartbeat {}">{} · {} s ago</span>',
            health,
            obj.last_heartbeat.isoformat(timespec="seconds"),
            health,
            f"{age:,.0f}",
        )

    @admin.display(description="docs/s while busy")
    def throughput(self, obj):
        if not obj.total_processing_time_ms:
            return "—"
        return f"{obj.tasks_processed / (obj.total_processing_time_ms / 1000):,.1f}"

    @admin.action(description="Clear selected dead workers (live ones are kept)", permissions=["operate"])
    def clear_dead(self, request, queryset):
        outcome = operations.clear_dead_workers(queryset.values_list("pk", flat=True), user=request.user)
        report(self, request, outcome, "cleared", noun="worker")

    class Media:
        css = {"all": ["queue_admin/sidecar_admin.css"]}
