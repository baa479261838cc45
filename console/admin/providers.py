from django.contrib import admin
from django.utils.translation import gettext_lazy

from console.admin.base import ReadOnlyAdmin
from queue_admin import config, limits
from queue_admin.models import ProviderLimitState, QueueConfig


@admin.register(ProviderLimitState)
class ProviderLimitStateAdmin(ReadOnlyAdmin):
    """Shared rate limits and circuit breaker per provider, as every worker sees them."""

    list_display = (
        "provider_key",
        "breaker_state",
        "consecutive_failures",
        "opened_at",
        "seconds_until_trial",
        "requests_last_minute",
        "tokens_last_minute",
        "last_error",
        "updated_at",
    )
    list_filter = ("breaker_state",)
    search_fields = ("provider_key",)

    @admin.display(description=gettext_lazy("requests in the last minute"))
    def requests_last_minute(self, obj):
        use = limits.quota_use(rpm=0, tpm=0).get(obj.provider_key)  # a row per provider: few
        return "—" if use is None else round(use.requests_used)

    @admin.display(description=gettext_lazy("tokens in the last minute"))
    def tokens_last_minute(self, obj):
        use = limits.quota_use(rpm=0, tpm=0).get(obj.provider_key)
        return "—" if use is None else round(use.tokens_used)

    @admin.display(description=gettext_lazy("trial in (s)"))
    def seconds_until_trial(self, obj):
        recovery = (
            QueueConfig.objects.filter(config_key="circuit_breaker_recovery_seconds")
            .values_list("config_value", flat=True)
            .first()
        ) or config.DEFAULTS["circuit_breaker_recovery_seconds"]
        seconds = limits.breaker_state(obj.provider_key, recovery_seconds=recovery).seconds_until_trial
        return "—" if seconds is None else round(seconds)
