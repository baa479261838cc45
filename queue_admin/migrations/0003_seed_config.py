"""Seed the queue settings with the defaults from queue_admin.config.SCHEMA; a key whose default
follows the provider (ConfigKey.by_provider) is left unstored, so its default keeps following."""

from django.db import migrations

from queue_admin.config import SCHEMA


def seed(apps, schema_editor):
    QueueConfig = apps.get_model("queue_admin", "QueueConfig")
    existing = set(QueueConfig.objects.values_list("config_key", flat=True))
    QueueConfig.objects.bulk_create(
        QueueConfig(config_key=key, config_value=item.default, description=item.help_text)
        for key, item in SCHEMA.items()
        if key not in existing and not item.by_provider
    )


class Migration(migrations.Migration):
    dependencies = [("queue_admin", "0002_enqueue_triggers")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
