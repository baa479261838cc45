from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the machine writes: no add, no edit form."""

    show_full_result_count = False  # no COUNT(*) over a million-row table per page view

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
