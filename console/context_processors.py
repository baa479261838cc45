from django.conf import settings


def deployment(request):
    """What every admin page shows about where it runs (see templates/admin/base_site.html)."""
    return {"sidecar_embedded_db": settings.EMBEDDED_DB}
