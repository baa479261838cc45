"""The dashboard's index (oldest pending), joint statistics for its estimates, and the
document freshness snapshot. The index is built CONCURRENTLY, as in 0008, so a busy queue is
not blocked meanwhile (hence a non-atomic migration)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("queue_admin", "0008_admin_list_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="FreshnessSnapshot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=200, unique=True)),
                ("documents", models.PositiveBigIntegerField(help_text="documents with text")),
                ("fresh", models.PositiveBigIntegerField()),
                ("stale", models.PositiveBigIntegerField()),
                ("missing", models.PositiveBigIntegerField()),
                (
                    "failed",
                    models.PositiveBigIntegerField(
                        help_text="not fresh, in the dead-letter list, not queued again"
                    ),
                ),
                ("counted_at", models.DateTimeField()),
                ("duration_ms", models.PositiveIntegerField(default=0)),
            ],
            options={
                "verbose_name": "document freshness snapshot",
                "db_table": "embedding_freshness_snapshots",
            },
        ),
        AddIndexConcurrently(
            model_name="queueitem",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["created_at"],
                name="embedding_queue_pending_idx",
            ),
        ),
        # The dashboard reads big (status, priority) groups from the planner's estimate instead of
        # counting them. Without joint statistics the planner multiplies the two columns'
        # frequencies as if independent (all 'completed' items being 'low' would be estimated
        # at a third); an MCV list over the pair gives each combination its own frequency.
        migrations.RunSQL(
            "CREATE STATISTICS embedding_queue_status_priority_stats (mcv) ON status, priority FROM embedding_queue",
            "DROP STATISTICS IF EXISTS embedding_queue_status_priority_stats",
        ),
    ]
