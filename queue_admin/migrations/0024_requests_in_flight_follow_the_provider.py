"""Requests in flight follow the embedding provider (ConfigKey.by_provider: 4 for a remote API
or TEI, 1 for the local model), as the batch size does since 0020. The row that migration 0003
seeded (1) is removed if nobody ever set it, so the provider's default takes over; a value a
person chose stays."""

from django.db import migrations

SEEDED_REQUESTS_IN_FLIGHT = 1


def follow_the_provider(apps, schema_editor):
    QueueConfig = apps.get_model("queue_admin", "QueueConfig")
    ConfigChange = apps.get_model("queue_admin", "ConfigChange")
    if ConfigChange.objects.filter(config_key="requests_in_flight").exists():
        return
    QueueConfig.objects.filter(
        config_key="requests_in_flight", config_value=SEEDED_REQUESTS_IN_FLIGHT
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("queue_admin", "0023_queue_operators_see_provider_batches")]

    # Going back needs nothing: without a row every version reads the schema's default.
    operations = [migrations.RunPython(follow_the_provider, migrations.RunPython.noop)]
