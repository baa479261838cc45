"""Sidecar's admin site: Django's, plus the pages that belong to no single model.

Each page module contributes its own URL patterns (a function `urls(site)` returning a list),
so adding a page means adding one line to `PAGE_MODULES`, not editing a central view.
Every page view is wrapped in `site.admin_view` (login + staff + CSRF) and checks its own
permission. A page module may also define `app_list_entry(site, request)`, returning
`(app_label, entry)` or None, to be listed under that app on the index and in the sidebar.
"""

from importlib import import_module

from django.contrib import admin
from django.utils.translation import gettext_lazy

# Modules with a `urls(site)` function: site-wide admin pages (dashboard, search, ...).
PAGE_MODULES: list[str] = ["console.admin.dashboard", "console.admin.search", "console.admin.search_quality"]


class SidecarAdminSite(admin.AdminSite):
    site_header = "Sidecar"
    site_title = gettext_lazy("Sidecar admin")
    index_title = gettext_lazy("Embeddings, queue and workers")

    def index(self, request, extra_context=None):
        """The queue dashboard for those who may view queue items; Django's index (which tells
        the others they have no permission) for everyone else."""
        from console.admin import dashboard

        if not dashboard.may_view(request.user):
            return super().index(request, extra_context)
        response = super().index(request, {**dashboard.context(request), **(extra_context or {})})
        response.template_name = dashboard.INDEX_TEMPLATE
        return response

    def get_urls(self):
        from console.admin_selection import guard_selection

        for model_admin in self._registry.values():  # every list, whoever registered it
            guard_selection(model_admin)
        pages = [pattern for module in PAGE_MODULES for pattern in import_module(module).urls(self)]
        return pages + super().get_urls()

    def get_app_list(self, request, app_label=None):
        """Each app's page (admin/<app>/) lists that app as Django does; the index and the
        sidebar group everything for operators (console/admin_menu.py)."""
        app_list = self._app_list_with_pages(request, app_label)
        if app_label is not None:
            return app_list
        from console import admin_menu
        from console.admin import dashboard

        entry = admin_menu.dashboard_entry(self.name) if dashboard.may_view(request.user) else None
        return admin_menu.arrange(app_list, entry, self.name)

    def _app_list_with_pages(self, request, app_label):
        app_list = super().get_app_list(request, app_label)
        for module in PAGE_MODULES:
            entry_for = getattr(import_module(module), "app_list_entry", None)
            found = entry_for(self, request) if entry_for else None
            if found is None:
                continue
            label, entry = found
            for app in app_list:
                if app["app_label"] == label:
                    app["models"] = sorted([*app["models"], entry], key=lambda model: model["name"])
        return app_list
