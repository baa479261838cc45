from django.contrib import admin

from queue_admin import config, limits
from queue_admin.admin.base import ReadOnlyAdmin
from queue_admin.models import ProviderLimitState, QueueConfig


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
