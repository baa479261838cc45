"""The documents list's newest-first order with its tie-breaker (id), so a page view reads 100
index entries instead of sorting every document a bulk load stamped with the same time.
Built CONCURRENTLY so a busy table keeps taking writes meanwhile (hence non-atomic)."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("documents", "0004_operator_permissions"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="sourcedocument",
            index=models.Index(fields=["-updated_at", "-id"], name="source_documents_newest_idx"),
        ),
        RemoveIndexConcurrently(model_name="sourcedocument", name="source_documents_updated_idx"),
    ]
