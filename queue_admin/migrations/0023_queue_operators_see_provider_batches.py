"""The "Queue operators" group may see the provider batches (view_providerbatch); cancelling one
is an action under the queue's own operate permission, as retry and cancel are."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Queue operators"
CODENAMES = ["view_providerbatch"]


def _permissions(apps):
    app_config = apps.get_app_config("queue_admin")
    # As in 0007: the permissions exist on a fresh database too; what was there is put back.
    previous, app_config.models_module = getattr(app_config, "models_module", None), True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = previous
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.filter(content_type__app_label="queue_admin", codename__in=CODENAMES)


def grant(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.add(*_permissions(apps))


def revoke(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(*_permissions(apps))


class Migration(migrations.Migration):
    dependencies = [("queue_admin", "0022_provider_batches")]

    operations = [migrations.RunPython(grant, revoke)]
