"""The "Queue operators" group may see the sources and run them day to day: pause, resume,
resync, backfill, and edit a table source's template (view_source, change_source). Attaching a
table (add_source: it installs triggers on the application's table) and detaching one
(delete_source: it deletes documents) stay with superusers and whoever is given them.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Queue operators"
CODENAMES = ["view_source", "change_source"]


def _permissions(apps):
    app_config = apps.get_app_config("documents")
    # As in 0007: the permissions exist on a fresh database too; what was there is put back.
    previous, app_config.models_module = getattr(app_config, "models_module", None), True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = previous
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.filter(content_type__app_label="documents", codename__in=CODENAMES)


def grant(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.add(*_permissions(apps))


def revoke(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(*_permissions(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0007_sources"),
        ("queue_admin", "0017_freshness_by_source"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
