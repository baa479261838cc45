"""What a person sees when django-axes has locked their sign-in after repeated failed logins.

django-axes counts failed logins in PostgreSQL (its `axes_accessattempt` table), so every web
process and machine shares the count; settings.py configures it (LOGIN_FAILURE_LIMIT,
LOGIN_LOCKOUT_MINUTES). A lock applies to one user name from one client address: other
people keep signing in, and the right password is refused too until the lock ends. This
module only answers the locked request: the admin's frame with when to try again, status 429
and `Retry-After`.
"""

import math
from datetime import timedelta

from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.contrib import admin
from django.db.models import Max
from django.template.response import TemplateResponse
from django.utils import timezone


def seconds_until_unlocked(request, username: str) -> int:
    """Seconds until this user name may try again from this address (the lock runs from the
    last failure counted before it; refused attempts during the lock do not extend it)."""
    cool_off = get_cool_off(request)
    last_failure = AccessAttempt.objects.filter(
        username=username, ip_address=getattr(request, "axes_ip_address", None)
    ).aggregate(last=Max("attempt_time"))["last"]
    if cool_off is None or last_failure is None:
        return math.ceil(cool_off.total_seconds()) if cool_off else 0
    return max(1, math.ceil((last_failure + cool_off - timezone.now()).total_seconds()))


def locked_out(request, original_response=None, credentials=None):
    """The AXES_LOCKOUT_CALLABLE: a page that says the sign-in is locked and for how long."""
    username = get_client_username(request, credentials) or ""
    seconds = seconds_until_unlocked(request, username)
    context = {
        **admin.site.each_context(request),
        "title": "Too many failed logins",
        "locked_username": username,
        "minutes": max(1, math.ceil(seconds / 60)),
        "unlocked_at": timezone.now() + timedelta(seconds=seconds),
    }
    response = TemplateResponse(request, "admin/login_locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response.render()
