"""The shared rate limits become a sliding window: per provider, what was
granted in each of the last 61 one-second slots replaces the token bucket's levels, which let
twice the quota through in some 60 s windows. See queue_admin/limits.py."""

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    # Renamed after what it changes; databases that applied it under its old name keep it.
    replaces = [("queue_admin", "0011_chaos_rate_window")]
    dependencies = [
        ("queue_admin", "0010_worker_metrics"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="providerlimitstate",
            name="refilled_at",
        ),
        migrations.RemoveField(
            model_name="providerlimitstate",
            name="requests_available",
        ),
        migrations.RemoveField(
            model_name="providerlimitstate",
            name="tokens_available",
        ),
        migrations.AddField(
            model_name="providerlimitstate",
            name="window_requests",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.BigIntegerField(), blank=True, null=True, size=None
            ),
        ),
        migrations.AddField(
            model_name="providerlimitstate",
            name="window_slots",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.BigIntegerField(), blank=True, null=True, size=None
            ),
        ),
        migrations.AddField(
            model_name="providerlimitstate",
            name="window_tokens",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.BigIntegerField(), blank=True, null=True, size=None
            ),
        ),
    ]
