"""The batch size follows the embedding provider (ConfigKey.by_provider):
a remote API is fastest with big batches, the local model with
neither. Their default is in effect while no row holds a value, so the row that migration 0003
seeded for `batch_size` is removed if nobody ever set it (its seeded 32, no change recorded);
a value a person chose stays."""

from django.db import migrations

SEEDED_BATCH_SIZE = 32


def follow_the_provider(apps, schema_editor):
    QueueConfig = apps.get_model("queue_admin", "QueueConfig")
    ConfigChange = apps.get_model("queue_admin", "ConfigChange")
    if ConfigChange.objects.filter(config_key="batch_size").exists():
        return
    QueueConfig.objects.filter(config_key="batch_size", config_value=SEEDED_BATCH_SIZE).delete()


class Migration(migrations.Migration):
    dependencies = [("queue_admin", "0019_maintain_vector_indexes")]

    # Going back needs nothing: without a row every version reads the schema's default.
    operations = [migrations.RunPython(follow_the_provider, migrations.RunPython.noop)]
