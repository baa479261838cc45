"""django-q2's schedules, with what they run fixed.

django-q2's own admin lets anyone with "add schedule" type any importable function and its
arguments, which a worker then runs: `httpx.get('http://169.254.169.254/…')` is a server-side
request forgery, `os.system(…)` worse. Sidecar's schedules (migration 0005) are the only ones
it needs, so here nobody adds one, and the function, hook and arguments of the existing ones
are read-only; their timing (type, minutes, repeats, next run) stays editable.
"""

from django.contrib import admin
from django_q import admin as django_q_admin  # registers django-q2's admins first
from django_q.models import Schedule

WHAT_RUNS = ("func", "hook", "args", "kwargs", "cluster", "intended_date_kwarg")


class FixedScheduleAdmin(django_q_admin.ScheduleAdmin):
    def has_add_permission(self, request):
        return False

    def get_readonly_fields(self, request, obj=None):
        present = {field.name for field in Schedule._meta.get_fields()}
        fixed = tuple(name for name in WHAT_RUNS if name in present)
        return (*super().get_readonly_fields(request, obj), *fixed)


admin.site.unregister(Schedule)
admin.site.register(Schedule, FixedScheduleAdmin)
