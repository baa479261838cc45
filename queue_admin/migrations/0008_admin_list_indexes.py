"""Indexes for the admin's queue lists (newest first; dead letters by when they failed).

Built CONCURRENTLY (outside a transaction) so that adding them to a production queue of
millions of rows does not block the triggers' inserts or the workers' claims meanwhile.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("documents", "0004_operator_permissions"),
        ("queue_admin", "0007_queue_operators_group"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="queueitem",
            index=models.Index(fields=["created_at", "id"], name="embedding_queue_created_idx"),
        ),
        AddIndexConcurrently(
            model_name="queueitem",
            index=models.Index(
                condition=models.Q(("status", "failed")),
                fields=["updated_at", "id"],
                name="embedding_queue_failed_idx",
            ),
        ),
    ]
