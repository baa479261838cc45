from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from documents import views as document_views
from embedding_site import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/search", document_views.search_api, name="search-api"),
]

# DEBUG off: a plain page with the request id, never a traceback (DEBUG on shows Django's).
handler500 = "embedding_site.views.server_error"
