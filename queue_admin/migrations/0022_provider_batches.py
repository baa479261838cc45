"""Provider batches (the Batch API: queue_admin/provider_batches.py), and the schedule that moves
them on every minute: send what is prepared, poll what is at the provider, write what it answered."""

import uuid

import django.db.models.functions.datetime
from django.db import migrations, models

SCHEDULE = "sidecar: advance provider batches"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE,
        defaults={
            "func": "queue_admin.tasks.advance_provider_batches",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0021_names_in_the_readers_language"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="ProviderBatch",
            fields=[
                (
                    "id",
                    models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("preparing", "Preparing"),
                            ("submitted", "At the provider"),
                            ("cancelling", "Cancelling"),
                            ("done", "Done"),
                        ],
                        default="preparing",
                        max_length=20,
                        verbose_name="state",
                    ),
                ),
                (
                    "provider_status",
                    models.CharField(blank=True, default="", max_length=40, verbose_name="provider's status"),
                ),
                ("model", models.CharField(max_length=200, verbose_name="model")),
                (
                    "provider_batch_id",
                    models.CharField(
                        blank=True, default="", max_length=200, verbose_name="provider's batch id"
                    ),
                ),
                ("input_file_id", models.CharField(blank=True, default="", max_length=200)),
                ("output_file_id", models.CharField(blank=True, default="", max_length=200)),
                ("error_file_id", models.CharField(blank=True, default="", max_length=200)),
                ("requests", models.JSONField(blank=True, default=dict)),
                ("documents", models.PositiveIntegerField(default=0, verbose_name="documents")),
                ("texts_sent", models.PositiveIntegerField(default=0, verbose_name="texts sent")),
                (
                    "estimated_tokens",
                    models.PositiveBigIntegerField(default=0, verbose_name="estimated tokens"),
                ),
                ("request_counts", models.JSONField(blank=True, default=dict)),
                ("completed", models.PositiveIntegerField(default=0, verbose_name="completed")),
                ("failed", models.PositiveIntegerField(default=0, verbose_name="failed")),
                ("returned", models.PositiveIntegerField(default=0, verbose_name="returned to the queue")),
                ("error_message", models.TextField(blank=True, default="", verbose_name="error")),
                (
                    "started_by",
                    models.CharField(blank=True, default="", max_length=200, verbose_name="started by"),
                ),
                (
                    "created_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(), verbose_name="created"
                    ),
                ),
                ("submitted_at", models.DateTimeField(blank=True, null=True, verbose_name="submitted")),
                ("finished_at", models.DateTimeField(blank=True, null=True, verbose_name="finished")),
                ("last_polled_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "provider batch",
                "verbose_name_plural": "provider batches",
                "db_table": "embedding_provider_batches",
                "ordering": ["-created_at"],
            },
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
