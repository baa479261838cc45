"""Sidecar's admin site: Django's, plus the pages that belong to no single model.

Each page module contributes its own URL patterns (a function `urls(site)` returning a list),
so adding a page means adding one line to `PAGE_MODULES`, not editing a central view.
Every page view is wrapped in `site.admin_view` (login + staff + CSRF) and checks its own
permission.
"""

from importlib import import_module

from django.contrib import admin

# Modules with a `urls(site)` function: site-wide admin pages (dashboard, search, ...).
PAGE_MODULES: list[str] = []


class SidecarAdminSite(admin.AdminSite):
    site_header = "Sidecar"
    site_title = "Sidecar admin"
    index_title = "Embeddings, queue and workers"

    def get_urls(self):
        pages = [pattern for module in PAGE_MODULES for pattern in import_module(module).urls(self)]
        return pages + super().get_urls()
