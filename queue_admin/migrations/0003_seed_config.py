"""Seed the queue settings with the defaults from queue_admin.config.SCHEMA."""

from django.db import migrations

from queue_admin.config import SCHEMA


def seed(apps, schema_editor):
    QueueConfig = apps.get_model("queue_admin", "QueueConfig")
    existing = set(QueueConfig.objects.values_list("config_key", flat=True))
    QueueConfig.objects.bulk_create(
        QueueConfig(config_key=key, config_value=item.default, description=item.help_text)
        for key, item in SCHEMA.items()
        if key not in existing
    )


class Migration(migrations.Migration):
    dependencies = [("queue_admin", "0002_enqueue_triggers")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
