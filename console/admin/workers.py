"""Workers: who is alive, how late each heartbeat is, what each one did. Rows are written by
the workers themselves; people only clear the rows of dead ones.

Drains retire every couple of minutes and their successors register anew, so most rows are of
workers that *finished* normally: the list leaves them out (a collapsed section below it lists
the latest) and the cleanup schedule deletes them after the retention period. Health comes
from `registry.health_conditions`, the rule the dashboard, /readyz and /metrics count by."""

from django.contrib import admin
from django.db.models import F
from django.db.models.functions import Now
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.admin.base import ReadOnlyAdmin, report
from queue_admin import config, operations, registry
from queue_admin.models import Worker

# Of the finished workers, the collapsed section lists this many, latest first.
FINISHED_SHOWN = 20


class HealthFilter(admin.SimpleListFilter):
    """By health; with none chosen, every worker that has not finished normally."""

    title = "health"
    parameter_name = "health"

    def lookups(self, request, model_admin):
        return [
            (registry.OK, "on time"),
            (registry.LATE, "late"),
            (registry.DEAD, "dead"),
            (registry.FINISHED, "finished (retired normally)"),
        ]

    def choices(self, changelist):
        first, *rest = super().choices(changelist)
        yield {**first, "display": "running or dead"}
        yield from rest

    def queryset(self, request, queryset):
        conditions = registry.health_conditions()
        if self.value() in conditions:
            return queryset.filter(conditions[self.value()])
        return queryset.exclude(conditions[registry.FINISHED])


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
    list_filter = (HealthFilter, "hostname")
    search_fields = ("worker_id", "hostname")
    ordering = ("-last_heartbeat",)
    actions = ["clear_dead"]

    def get_queryset(self, request):
        # The heartbeat's age on the database's clock, the one the workers stamp it with.
        queryset = super().get_queryset(request).annotate(heartbeat_age=Now() - F("last_heartbeat"))
        return registry.with_health(queryset)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), **self._finished_section(request)}
        return super().changelist_view(request, extra_context)

    def _finished_section(self, request) -> dict:
        if HealthFilter.parameter_name in request.GET:
            return {}
        finished = self.get_queryset(request).filter(status=Worker.Status.FINISHED)
        return {
            "finished_workers": list(finished.order_by("-updated_at")[:FINISHED_SHOWN]),
            "finished_count": finished.count(),
            "finished_kept_hours": config.current().queue_cleanup_interval_hours,
            "finished_filter": f"?{HealthFilter.parameter_name}={registry.FINISHED}",
        }

    def has_operate_permission(self, request):
        return request.user.has_perm("queue_admin.operate_queueitem")

    @admin.display(description=gettext_lazy("heartbeat"), ordering="-last_heartbeat")
    def heartbeat(self, obj):
        return format_html(
            '<span class="sidecar-heartbeat {}" title="{}">{} · {}</span>',
            obj.health,
            _("%(health)s; last heartbeat %(at)s")
            % {
                "health": registry.HEALTH_LABELS[obj.health],
                "at": obj.last_heartbeat.isoformat(timespec="seconds"),
            },
            obj.health,
            _("%(seconds)s s ago") % {"seconds": f"{obj.heartbeat_age.total_seconds():,.0f}"},
        )

    @admin.display(description=gettext_lazy("docs/s while busy"))
    def throughput(self, obj):
        if not obj.total_processing_time_ms:
            return "—"
        return f"{obj.tasks_processed / (obj.total_processing_time_ms / 1000):,.1f}"

    @admin.action(
        description=gettext_lazy("Clear selected dead workers (live ones are kept)"), permissions=["operate"]
    )
    def clear_dead(self, request, queryset):
        outcome = operations.clear_dead_workers(queryset.values_list("pk", flat=True), user=request.user)
        report(self, request, outcome, "cleared", noun="worker")
