"""Admin for the queue's machine-owned tables: read-only lists, filters and search.

Queue items and workers are written only by the queue SQL; people will change them through
actions that call services (the admin issue adds those), never by editing fields.
"""

from django.contrib import admin

from queue_admin import config, limits
from queue_admin.models import ProviderLimitState, QueueConfig, QueueItem, Worker


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False  # no COUNT(*) over a million-row table per page view

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


@admin.register(ProviderLimitState)
class ProviderLimitStateAdmin(ReadOnlyAdmin):
    """Shared rate-limit buckets and circuit breaker per provider, as every worker sees them."""

    list_display = (
        "provider_key",
        "breaker_state",
        "consecutive_failures",
        "opened_at",
        "seconds_until_trial",
        "requests_available",
        "tokens_available",
        "last_error",
        "updated_at",
    )
    list_filter = ("breaker_state",)
    search_fields = ("provider_key",)

    @admin.display(description="trial in (s)")
    def seconds_until_trial(self, obj):
        recovery = (
            QueueConfig.objects.filter(config_key="circuit_breaker_recovery_seconds")
            .values_list("config_value", flat=True)
            .first()
        ) or config.DEFAULTS["circuit_breaker_recovery_seconds"]
        seconds = limits.breaker_state(obj.provider_key, recovery_seconds=recovery).seconds_until_trial
        return "—" if seconds is None else round(seconds)


@admin.register(QueueConfig)
class QueueConfigAdmin(admin.ModelAdmin):
    list_display = ("config_key", "label", "config_value", "allowed", "updated_by", "updated_at")
    fields = ("config_key", "config_value", "allowed", "description", "updated_by", "updated_at")
    readonly_fields = ("config_key", "allowed", "description", "updated_by", "updated_at")
    search_fields = ("config_key",)

    @admin.display(description="setting")
    def label(self, obj):
        item = config.SCHEMA.get(obj.config_key)
        return item.label if item else obj.config_key

    @admin.display(description="allowed values")
    def allowed(self, obj):
        item = config.SCHEMA.get(obj.config_key)
        return f"{item.allowed()} (default {config.show_value(item.default)})" if item else "unknown setting"

    def has_add_permission(self, request):
        return False  # the keys are fixed by the schema; the migration seeds every one

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
