"""The schedule of the vector index policy: every minute, start the index builds that are due
(queue_admin/vector_indexes.py)."""

from django.db import migrations

NAME = "sidecar: maintain vector indexes"


def create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "queue_admin.tasks.maintain_vector_indexes",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0018_queue_operators_run_sources"),
        ("documents", "0013_vector_index_per_model"),
    ]

    operations = [migrations.RunPython(create, remove)]
