"""The django-q2 schedules that keep the pipeline running (queue_admin/tasks.py)."""

from django.db import migrations

SCHEDULES = [
    # (name, function, every N minutes)
    ("sidecar: keep drains running", "queue_admin.tasks.keep_drains_running", 1),
    ("sidecar: reconcile embeddings", "queue_admin.tasks.reconcile", 5),
    ("sidecar: delete old completed items", "queue_admin.tasks.delete_old_completed", 60),
]


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1}
        )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(
        name__in=[name for name, _, _ in SCHEDULES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0004_provider_limits"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create, remove)]
