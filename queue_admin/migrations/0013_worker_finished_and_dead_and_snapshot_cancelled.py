"""Workers end *finished* (said goodbye) or *dead* (went silent) instead of one "stopped";
freshness snapshots count documents held by a cancelled item apart from failed ones."""

from django.db import migrations, models

# A "stopped" row said goodbye if it was marked within three heartbeat intervals of its last
# heartbeat (a drain retiring); later, it was found silent (dead). "error" was never written.
STOPPED_TO_FINISHED_OR_DEAD = """
UPDATE embedding_queue_workers w
   SET status = CASE WHEN w.updated_at - w.last_heartbeat
                          <= make_interval(secs => 3 * sidecar_config_int('worker_heartbeat_interval_ms', 30000) / 1000.0)
                     THEN 'finished' ELSE 'dead' END
 WHERE w.status = 'stopped';
UPDATE embedding_queue_workers SET status = 'dead' WHERE status = 'error';
"""
FINISHED_AND_DEAD_TO_STOPPED = (
    "UPDATE embedding_queue_workers SET status = 'stopped' WHERE status IN ('finished', 'dead');"
)

DESCRIPTIONS = {
    "worker_heartbeat_interval_ms": (
        "How often workers report that they are alive; silent for 1.5 intervals is late, for 3 dead."
    ),
    "queue_cleanup_interval_hours": (
        "Completed queue items, and workers that finished normally, older than this are deleted."
    ),
}


def describe(apps, schema_editor):
    QueueConfig = apps.get_model("queue_admin", "QueueConfig")
    for key, text in DESCRIPTIONS.items():
        QueueConfig.objects.filter(config_key=key).update(description=text)


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0012_drop_duplicate_document_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="freshnesssnapshot",
            name="cancelled",
            field=models.PositiveBigIntegerField(
                default=0, help_text="not fresh, newest item cancelled by a person, not queued again"
            ),
        ),
        migrations.AlterField(
            model_name="freshnesssnapshot",
            name="failed",
            field=models.PositiveBigIntegerField(help_text="not fresh, newest item failed, not queued again"),
        ),
        migrations.AlterField(
            model_name="worker",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("idle", "Idle"), ("finished", "Finished"), ("dead", "Dead")],
                default="idle",
                max_length=20,
            ),
        ),
        migrations.RunSQL(STOPPED_TO_FINISHED_OR_DEAD, reverse_sql=FINISHED_AND_DEAD_TO_STOPPED),
        migrations.RunPython(describe, migrations.RunPython.noop),
    ]
