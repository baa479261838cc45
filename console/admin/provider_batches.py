"""Provider batches: backfills sent through the provider's Batch API, how far each has got at
the provider, and what was written. Rows belong to `queue_admin/provider_batches.py`; people
only cancel them (what the provider finished is still written, the rest goes back to the
queue)."""

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from console.admin.base import ReadOnlyAdmin
from queue_admin import provider_batches
from queue_admin.models import ProviderBatch


@admin.register(ProviderBatch)
class ProviderBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "state",
        "at_the_provider",
        "documents",
        "completed",
        "failed",
        "returned",
        "started_by",
        "error_message",
    )
    list_filter = ("state",)
    search_fields = ("provider_batch_id", "id")
    actions = ["cancel_batches"]
    fields = (
        "id", "state", "provider_status", "provider_batch_id", "model", "documents", "texts_sent",
        "estimated_tokens", "request_counts", "completed", "failed", "returned", "queue_items",
        "error_message", "started_by", "created_at", "submitted_at", "last_polled_at", "finished_at",
        "input_file_id", "output_file_id", "error_file_id",
    )  # fmt: skip
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None):
        return False

    def has_operate_permission(self, request):
        return request.user.has_perm("queue_admin.operate_queueitem")

    @admin.display(description=gettext_lazy("at the provider"))
    def at_the_provider(self, obj):
        if not obj.provider_batch_id:
            return "—"
        counts = obj.request_counts or {}
        return format_html(
            "{} · {}",
            obj.provider_status,
            _("%(done)s of %(total)s requests answered")
            % {"done": f"{counts.get('completed', 0):,}", "total": f"{counts.get('total', 0):,}"},
        )

    @admin.display(description=gettext_lazy("queue items"))
    def queue_items(self, obj):
        url = reverse("admin:queue_admin_queueitem_changelist") + "?" + urlencode({"worker": obj.worker_id})
        return format_html('<a href="{}">{}</a>', url, _("The items this batch holds now"))

    @admin.action(
        description=gettext_lazy("Cancel selected batches (finished answers are still written)"),
        permissions=["operate"],
    )
    def cancel_batches(self, request, queryset):
        cancelled, refused = 0, []
        for batch in queryset.filter(state__in=ProviderBatch.OPEN_STATES):
            try:
                provider_batches.cancel(batch.id, cancelled_by=request.user.get_username())
                cancelled += 1
            except Exception as error:  # the provider unreachable, or a step running now
                refused.append(f"{batch}: {error}")
        if cancelled:
            self.message_user(
                request,
                ngettext(
                    "Cancelled %(count)s batch. What the provider had finished is written at the next poll; "
                    "the rest goes back to the queue.",
                    "Cancelled %(count)s batches. What the provider had finished is written at the next poll; "
                    "the rest goes back to the queue.",
                    cancelled,
                )
                % {"count": cancelled},
                messages.SUCCESS,
            )
        for reason in refused:
            self.message_user(request, _("Not cancelled: %(reason)s") % {"reason": reason}, messages.ERROR)
        if not cancelled and not refused:
            self.message_user(request, _("None of the selected batches is still open."), messages.WARNING)
