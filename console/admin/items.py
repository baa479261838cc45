"""Queue items, and their two working lists: dead letters (failed) and stuck items (still
processing after their lease ran out). Rows are the machine's; people act on them with the
actions here, which call `queue_admin/operations.py`."""

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import F
from django.db.models.functions import Now
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from console.admin.base import LINKED_AT_MOST, ReadOnlyAdmin, queue_items_link, report
from queue_admin import operations
from queue_admin.models import DeadLetter, QueueItem, StuckItem, Worker

# How many of the items that would fail again the warning names (it says how many in all).
MAX_LISTED = 20

OPERATE = "queue_admin.operate_queueitem"


class WorkerFilter(admin.SimpleListFilter):
    """By worker, choosing among registered workers that have not finished normally (a DISTINCT
    over a million queue rows would be slow; the registry is small, and retired drains would
    crowd out the ones worth looking at)."""

    title = gettext_lazy("worker")
    parameter_name = "worker"

    def lookups(self, request, model_admin):
        workers = list(
            Worker.objects.exclude(status=Worker.Status.FINISHED)
            .order_by("-last_heartbeat")
            .values_list("pk", flat=True)[:50]
        )
        # A worker whose registry row was cleared still names items: keep filtering by it
        # (Django drops a filter with no choices, which would silently show every item).
        if self.value() and self.value() not in workers:
            workers.append(self.value())
        return [(w, w) for w in workers]

    def queryset(self, request, queryset):
        return queryset.filter(worker_id=self.value()) if self.value() else queryset


class QueueItemAdminBase(ReadOnlyAdmin):
    list_display = (
        "document_link",
        "status_badge",
        "priority",
        "attempts",
        "error_kind",
        "short_error",
        "worker_id",
        "next_attempt_at",
        "updated_at",
    )
    # Not the first column, Django's default: a link around the document's link is an empty
    # link followed by the document's (browsers do not nest links).
    list_display_links = ("status_badge",)
    list_filter = ("status", "priority", "error_kind", WorkerFilter)
    search_fields = ("=document__id", "document__title", "=id")
    list_select_related = ("document",)
    raw_id_fields = ("document",)
    ordering = ("-created_at",)
    readonly_fields = ("document_link",)
    fieldsets = [
        (None, {"fields": ("document_link", "status", "priority", "operation", "metadata")}),
        (gettext_lazy("Attempts and errors"), {"fields": ("retry_count", "max_retries", "next_attempt_at",
                                            "error_kind", "error_message", "rate_limit_delay_ms")}),
        (gettext_lazy("Claim"), {"fields": ("worker_id", "batch_id", "lease_expires_at", "processing_started_at",
                              "processing_completed_at", "estimated_tokens", "actual_tokens")}),
        (gettext_lazy("Dates"), {"fields": ("created_at", "updated_at")}),
    ]  # fmt: skip

    def get_queryset(self, request):
        # Only the title of the document: its text may be megabytes.
        return super().get_queryset(request).defer("document__content", "document__metadata")

    def has_operate_permission(self, request):
        return request.user.has_perm(OPERATE)

    @admin.display(description=gettext_lazy("document"), ordering="document__title")
    def document_link(self, obj):
        url = reverse("admin:documents_sourcedocument_change", args=[obj.document_id])
        return format_html('<a href="{}">{}</a>', url, Truncator(str(obj.document)).chars(60))

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, obj):
        return format_html('<span class="sidecar-status {}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description=gettext_lazy("attempts"), ordering="retry_count")
    def attempts(self, obj):
        return f"{obj.retry_count} / {obj.max_retries}"

    @admin.display(description=gettext_lazy("error"))
    def short_error(self, obj):
        return Truncator(obj.error_message).chars(80) if obj.error_message else ""

    @admin.action(description=gettext_lazy("Retry selected (failed or cancelled → pending, attempts reset)"),
                  permissions=["operate"])  # fmt: skip
    def retry(self, request, queryset):
        """Retry, but first warn when some selected items failed for good on text nobody has
        changed since (they would fail again): retry all anyway, only the others, or go back."""
        doomed = operations.likely_to_fail_again(queryset)
        choice = request.POST.get("permanent")
        if choice is None and doomed.exists():
            return TemplateResponse(
                request,
                "admin/queue_admin/retry_permanent.html",
                {
                    **self.admin_site.each_context(request),
                    "title": _("Retry items that will likely fail again?"),
                    "opts": self.model._meta,
                    "doomed": doomed.select_related("document")[:MAX_LISTED],
                    "doomed_count": doomed.count(),
                    "selected_count": (selected_count := queryset.count()),
                    "others_count": selected_count - doomed.count(),
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "select_across": request.POST.get("select_across", "0"),
                    "action": request.POST.get("action", "retry"),
                },
            )
        left_out = (0, "")
        if choice == "others":
            left_out = (doomed.count(), _("they would fail again as they are"))
            queryset = queryset.exclude(pk__in=doomed.values("pk"))
        since = timezone.now()
        ids = list(queryset.values_list("id", flat=True)[: LINKED_AT_MOST + 1])
        outcome = operations.retry(queryset.values_list("id", flat=True).iterator(), user=request.user)
        link = queue_items_link(since=since, item_ids=ids if len(ids) <= LINKED_AT_MOST else None)
        report(self, request, outcome, "retried", left_out=left_out, link=link)

    @admin.action(
        description=gettext_lazy("Cancel selected (pending, processing or rate-limited)"),
        permissions=["operate"],
    )
    def cancel(self, request, queryset):
        outcome = operations.cancel(queryset.values_list("id", flat=True).iterator(), user=request.user)
        report(self, request, outcome, "cancelled")

    @admin.action(description=gettext_lazy("Raise selected to high priority"), permissions=["operate"])
    def raise_priority(self, request, queryset):
        outcome = operations.raise_priority(
            queryset.values_list("id", flat=True).iterator(), user=request.user
        )
        report(self, request, outcome, "raised")


@admin.register(QueueItem)
class QueueItemAdmin(QueueItemAdminBase):
    actions = ["retry", "cancel", "raise_priority"]


@admin.register(DeadLetter)
class DeadLetterAdmin(QueueItemAdminBase):
    """Failed items: kept with their error kind, message and attempts until a person acts."""

    list_display = (
        "document_link",
        "error_kind",
        "error_message_full",
        "attempts",
        "worker_id",
        "updated_at",
    )
    list_display_links = ("error_message_full",)
    list_filter = ("error_kind", "priority", WorkerFilter)
    ordering = ("-updated_at",)
    actions = ["retry"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=QueueItem.Status.FAILED)

    @admin.display(description=gettext_lazy("error"))
    def error_message_full(self, obj):
        return Truncator(obj.error_message).chars(300)


@admin.register(StuckItem)
class StuckItemAdmin(QueueItemAdminBase):
    """Items still processing after their lease ran out: their worker died or hangs. Workers
    take them back by themselves within seconds; this list shows any that linger."""

    list_display = ("document_link", "worker_id", "lease_expired", "processing_started_at", "attempts")
    list_display_links = ("lease_expired",)
    list_filter = ("priority", WorkerFilter)
    ordering = ("lease_expires_at",)
    actions = ["requeue", "cancel"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(status=QueueItem.Status.PROCESSING, lease_expires_at__lt=Now())
            .annotate(expired_for=Now() - F("lease_expires_at"))
        )

    @admin.display(description=gettext_lazy("lease expired"), ordering="lease_expires_at")
    def lease_expired(self, obj):
        return _("%(seconds)s s ago") % {"seconds": f"{obj.expired_for.total_seconds():,.0f}"}

    @admin.action(
        description=gettext_lazy("Requeue selected now (counts as an attempt)"), permissions=["operate"]
    )
    def requeue(self, request, queryset):
        outcome = operations.requeue_stuck(
            queryset.values_list("id", flat=True).iterator(), user=request.user
        )
        report(self, request, outcome, "requeued")
