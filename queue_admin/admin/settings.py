from django.contrib import admin

from queue_admin import config
from queue_admin.models import QueueConfig


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
