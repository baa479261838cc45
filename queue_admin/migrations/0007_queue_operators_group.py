"""The "Queue operators" group: the people who run Sidecar day to day.

They may view everything, edit the queue settings, add and edit documents (imports), retry /
cancel / reprioritise queue items, re-embed and backfill, and search. They may not delete
documents, users or anything else. Superusers can do all of it anyway.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Queue operators"

# (app_label, codename) beyond the "view_*" permission of every Sidecar model.
EXTRA = [
    ("queue_admin", "change_queueconfig"),
    ("queue_admin", "operate_queueitem"),
    ("documents", "add_sourcedocument"),
    ("documents", "change_sourcedocument"),
    ("documents", "reembed_sourcedocument"),
    ("documents", "search_sourcedocument"),
]


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); make sure the ones
    # this group needs exist now, on a fresh database too.
    for label in ("documents", "queue_admin"):
        app_config = apps.get_app_config(label)
        # Put back what was there: called with the real app registry (a test fixture), None
        # would hide the app from every later post_migrate (flush's included).
        previous, app_config.models_module = getattr(app_config, "models_module", None), True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    views = Permission.objects.filter(
        content_type__app_label__in=["documents", "queue_admin"], codename__startswith="view_"
    )
    extra = [
        Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in EXTRA
    ]
    group.permissions.add(*views, *extra)


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("documents", "0004_operator_permissions"),
        ("queue_admin", "0006_config_history_and_proxies"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
