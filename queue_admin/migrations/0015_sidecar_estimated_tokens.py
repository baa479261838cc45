"""sidecar_estimated_tokens: the queue's one token estimate, which sidecar_enqueue now calls
(queue_admin/sql/enqueue.sql)."""

from django.db import migrations

from embedding_site.db.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0014_enqueue_functions_and_triggers_from_sql_files"),
    ]

    # Not reversible by itself: the file holds only the current definitions.
    operations = [
        RunSQLFile(
            "queue_admin",
            "enqueue.sql",
            sha256="238f73ae7c65a865ce78809fbffd6cb2709d87ae424f28da73a4b617f96bbfea",
        ),
    ]
