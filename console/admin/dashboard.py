"""The queue dashboard: the admin index for users who may view queue items.

`SidecarAdminSite.index` renders `INDEX_TEMPLATE` with `context(request)`; this page module adds
the fragment the page's script fetches every few seconds to refresh itself, and the POST of
the "Pause queue" / "Resume queue" button. The figures come from `queue_admin.dashboard`, and
once a table is attached each source's from `queue_admin.source_figures`.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _

from console import charts
from documents.models import Source
from queue_admin import config, source_figures
from queue_admin.dashboard import dashboard
from queue_admin.models import QueueItem

VIEW_PERMISSION = "queue_admin.view_queueitem"
SWITCH_PERMISSION = "queue_admin.change_queueconfig"
INDEX_TEMPLATE = "console/dashboard.html"
FIGURES_TEMPLATE = "console/dashboard_figures.html"
REFRESH_SECONDS = 10


def may_view(user) -> bool:
    return user.has_perm(VIEW_PERMISSION)


def _quota_rows(figures) -> list[dict]:
    rows = []
    for provider in figures.provider_limits:
        quota = provider.quota
        rows.append(
            {
                "provider": provider,
                "requests_share": quota.requests_used / quota.requests_quota,
                "tokens_share": quota.tokens_used / quota.tokens_quota,
            }
        )
    return rows


def _sources(model: str) -> list:
    """Each source's figures; none while Sidecar's own documents are the only source."""
    if Source.objects.count() < 2:
        return []
    return source_figures.for_all(model)


def context(request) -> dict:
    """The figures and what the template needs to lay them out (rows in display order)."""
    figures = dashboard()
    status_rows = [
        {
            "status": status,
            "label": label,
            "by_priority": [
                (priority, figures.counts[status][priority]) for priority in QueueItem.Priority.values
            ],
            "total": figures.by_status[status],
        }
        for status, label in QueueItem.Status.choices
    ]
    return {
        "dashboard": figures,
        "status_rows": status_rows,
        "priorities": QueueItem.Priority.choices,
        "chart": charts.throughput_chart(figures.throughput),
        "quota_rows": _quota_rows(figures),
        "sources": _sources(figures.provider.model_id),
        "may_switch_queue": request.user.has_perm(SWITCH_PERMISSION),
        "refresh_seconds": REFRESH_SECONDS,
        "config_cache_seconds": round(config.CACHE_SECONDS),
        # Marathon / Fast-track / Custom: which preset the queue settings match now.
        "queue_mode": config.preset_label(config.current_preset()),
        "queue_mode_url": reverse("admin:queue_admin_queueconfig_changelist") + "#queue-modes",
    }


def figures_fragment(request):
    """The figures alone, for the page's script to swap in (403 for those who may not view)."""
    if not may_view(request.user):
        raise PermissionDenied
    return TemplateResponse(request, FIGURES_TEMPLATE, context(request))


def switch_queue(request):
    """POST queue_enabled=on|off: resume or pause the queue, recorded in the settings history."""
    if not request.user.has_perm(SWITCH_PERMISSION):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    wanted = request.POST.get("queue_enabled")
    if wanted not in ("on", "off"):
        messages.error(request, _("Nothing changed: the form must send queue_enabled=on or off."))
        return redirect("admin:index")
    enabled = wanted == "on"
    change = config.set_value("queue_enabled", enabled, user=request.user)
    seconds = round(config.CACHE_SECONDS)
    if change is None:
        messages.info(
            request, _("The queue was already running.") if enabled else _("The queue was already paused.")
        )
    elif enabled:
        messages.success(
            request,
            _("Queue resumed. Workers see it within %(seconds)s seconds and start claiming work again.")
            % {"seconds": seconds},
        )
    else:
        messages.warning(
            request,
            _(
                "Queue paused. Workers see it within %(seconds)s seconds and stop claiming new work; "
                "batches already claimed finish."
            )
            % {"seconds": seconds},
        )
    return redirect("admin:index")


def urls(site) -> list:
    return [
        path("dashboard/figures/", site.admin_view(figures_fragment), name="dashboard_figures"),
        path("dashboard/queue-switch/", site.admin_view(switch_queue), name="dashboard_queue_switch"),
    ]
