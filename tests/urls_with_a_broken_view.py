"""The site's URLs plus one view that raises, for tests/robustness/test_security.py (DEBUG off shows no
traceback). Not used by the site itself."""

from django.urls import path

from console.urls import *  # noqa: F403 - the real routes and handler500
from console.urls import urlpatterns as site_urlpatterns

BROKEN_DETAIL = "internal-detail-that-must-stay-in-the-log-7781"


def broken_view(request):
    raise RuntimeError(f"a bug in a view: {BROKEN_DETAIL}")


urlpatterns = [
    *site_urlpatterns,
    path("broken/", broken_view),
    path("api/broken", broken_view),
]
