from django.contrib.admin.apps import AdminConfig


class SidecarAdminConfig(AdminConfig):
    """Django's admin with Sidecar's site (embedding_site/admin_site.py) as `admin.site`."""

    default_site = "embedding_site.admin_site.SidecarAdminSite"
