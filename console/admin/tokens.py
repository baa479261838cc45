from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy

from documents.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Create a token (its plaintext is shown once, in a message) or revoke it (an action).
    The hash and the dates are the machine's: read-only."""

    list_display = ("name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("token_hash", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name")
        return ("user", "name", "token_hash", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        # A token stays with the user it was issued to.
        return self.readonly_fields + (("user",) if obj is not None else ())

    def save_model(self, request, obj, form, change):
        if not change:
            plaintext = obj.set_new_token()
            super().save_model(request, obj, form, change)
            self.message_user(
                request,
                f"API token for {obj.user}: {plaintext} — copy it now, it will not be shown again.",
                messages.WARNING,
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description=gettext_lazy("Revoke selected API tokens"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request, f"Revoked {revoked} API token{'s' if revoked != 1 else ''}.", messages.SUCCESS
        )
