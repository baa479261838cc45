from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps  # the module: its AdminConfig must not count as ours


class ConsoleConfig(AppConfig):
    """The console layer: both admins, the dashboard, the search page, the HTTP API, health and
    metrics. Its templates and static files are found through this app."""

    name = "console"


class SidecarAdminConfig(admin_apps.AdminConfig):
    """Django's admin with Sidecar's site (console/admin_site.py) as `admin.site`."""

    default = False  # named in INSTALLED_APPS as console.apps.SidecarAdminConfig
    default_site = "console.admin_site.SidecarAdminSite"
