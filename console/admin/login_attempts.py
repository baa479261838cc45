"""django-axes' list of failed logins (Axes → Access attempts), where an administrator lifts a
lock by deleting its row (README, "Bad input and security").

Without axes' own "Clean up expired attempts" action: in django-axes 8.3.1 it reads request
attributes that only axes' login handling sets, so running it from the list was a 500.
Expired attempts are deleted at every login anyway.
"""

from axes import admin as axes_admin  # registers axes' admins first
from axes.models import AccessAttempt
from django.contrib import admin


class AccessAttemptAdmin(axes_admin.AccessAttemptAdmin):
    actions = []


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
    admin.site.register(AccessAttempt, AccessAttemptAdmin)
