"""How the dashboard writes its figures: estimates marked "≈" with a tooltip, durations and
rates in words a person reads at a glance."""

from django import template
from django.utils.html import format_html
from django.utils.translation import gettext as _

from queue_admin.queue_counts import Count

register = template.Library()


@register.filter
def count(value) -> str:
    """A Count (or a plain number) with thousands separators; an estimate as "≈ N" (or "> N"
    for a lower bound) with its reason as a tooltip."""
    if isinstance(value, Count):
        if value.estimated:
            return format_html(
                '<span class="sidecar-estimate" title="{}">{} {}</span>',
                _("Estimate: %(why)s") % {"why": value.note},
                ">" if value.at_least else "≈",
                f"{value.value:,}",
            )
        value = value.value
    return f"{value:,}"


@register.filter
def duration(seconds) -> str:
    """45 s, 12 min, 3 h 20 min, 2 d 4 h; "—" for None."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return _("%(s)s s") % {"s": seconds}
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return _("%(min)s min") % {"min": minutes}
    if hours < 24:
        if minutes % 60:
            return _("%(h)s h %(min)s min") % {"h": hours, "min": minutes % 60}
        return _("%(h)s h") % {"h": hours}
    if hours % 24:
        return _("%(d)s d %(h)s h") % {"d": days, "h": hours % 24}
    return _("%(d)s d") % {"d": days}


@register.filter
def percent(fraction) -> str:
    if fraction is None:
        return "—"
    return f"{fraction * 100:.1f} %" if fraction < 0.1 else f"{fraction * 100:.0f} %"


@register.filter
def per_minute(per_second) -> str:
    return "—" if per_second is None else f"{per_second * 60:,.1f}"


@register.filter
def breaker_label(state: str) -> str:
    labels = {
        "closed": _("closed"),
        "open": _("open"),
        "half_open": _("half-open"),
        "not_applicable": _("not applicable"),
    }
    return labels.get(state, state)
