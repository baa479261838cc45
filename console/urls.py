from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from console import api, views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Browsers ask for /favicon.ico whatever the page links: send them to the static icon.
    path("favicon.ico", views.favicon),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/search", api.search_api, name="search-api"),
]

# DEBUG off: a plain page with the request id, never a traceback (DEBUG on shows Django's).
handler500 = "console.views.server_error"
