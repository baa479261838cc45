"""Apply the enqueue functions and the source_documents triggers from queue_admin/sql/. The
files hold the definitions that 0002 created, unchanged, so on an existing database this
replaces each one with itself."""

from django.db import migrations

from embedding_site.db.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0013_worker_finished_and_dead_and_snapshot_cancelled"),
    ]

    # Reversing is a no-op: before this migration the database held the same definitions.
    operations = [
        RunSQLFile(
            "queue_admin",
            "enqueue.sql",
            sha256="b3f513b725df530103669b0b29652f6f471fb4ceaf835803ef1589dd6b37a6d9",
            reverse_sql=migrations.RunSQL.noop,
        ),
        RunSQLFile(
            "queue_admin",
            "document_triggers.sql",
            sha256="ea3974fd9b42014cf19830c3a8de22d5324719ec7cd7d3c06eb30b52edaf8c95",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
