"""The admin's menu (index page and navigation sidebar) arranged for operators.

Django lists apps alphabetically, which puts login-throttling records, django-q2's task
tables and API tokens beside the pages an operator runs the queue with. `arrange` turns
Django's app list into two groups: what operators use, in the order of their day's work, then
everything else under *Advanced*. A link the user may not open is simply absent from Django's
list, so it is absent here too.
"""

from django.urls import reverse
from django.utils.translation import gettext as _

OPERATORS_LABEL = "sidecar"
ADVANCED_LABEL = "advanced"

# (app label, object name) in the order operators reach for them; the dashboard comes first.
OPERATOR_ORDER = [
    ("sidecar", "Dashboard"),
    ("documents", "SourceDocument"),
    ("documents", "Source"),
    ("documents", "SemanticSearch"),
    ("documents", "SearchQuality"),
    ("queue_admin", "DeadLetter"),
    ("queue_admin", "Worker"),
    ("queue_admin", "QueueConfig"),
]
# Sidecar's own apps: whatever of theirs is not named above or below follows the operators' list.
SIDECAR_APPS = {"documents", "queue_admin"}
# Sidecar's own plumbing, listed under Advanced with every third-party app.
PLUMBING = {("documents", "ApiToken"), ("queue_admin", "ProviderLimitState")}


def dashboard_entry(site_name: str) -> dict:
    return {
        "name": _("Dashboard"),
        "object_name": "Dashboard",
        # Django marks a sidebar link "current" when its URL is a prefix of the page's path;
        # plain /admin/ is a prefix of every admin page, so link to the index's main content.
        "admin_url": reverse("admin:index", current_app=site_name) + "#content-start",
        "add_url": None,
        "view_only": True,
        "perms": {"view": True},
    }


def arrange(app_list: list[dict], dashboard: dict | None, site_name: str) -> list[dict]:
    """Django's app list (apps with their models) as [operators' group, Advanced group]; a
    group with nothing the user may open is left out."""
    found: dict[tuple[str, str], dict] = {}
    rest: list[tuple[str, dict]] = []
    advanced: list[dict] = []
    for app in app_list:
        for model in app["models"]:
            key = (app["app_label"], model["object_name"])
            if key in PLUMBING or app["app_label"] not in SIDECAR_APPS:
                # The app's name keeps "Task queue" (django-q2) apart from the Embedding queue.
                advanced.append({**model, "name": f"{model['name']} — {app['name']}"})
            elif key in OPERATOR_ORDER:
                found[key] = model
            else:
                rest.append((app["app_label"], model))
    if dashboard is not None:
        found[("sidecar", "Dashboard")] = dashboard
    operators = [found[key] for key in OPERATOR_ORDER if key in found] + [model for _, model in rest]
    index = reverse("admin:index", current_app=site_name)
    groups = [
        {"name": "Sidecar", "app_label": OPERATORS_LABEL, "models": operators},
        {"name": _("Advanced"), "app_label": ADVANCED_LABEL, "models": advanced},
    ]
    return [{**group, "app_url": index, "has_module_perms": True} for group in groups if group["models"]]
