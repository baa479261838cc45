"""Apply queue_admin/sql/document_triggers.sql: documents are queued at their source's
priority and not while their source is paused, and the trigger functions carry Sidecar's
search_path (they also run in the sessions of an application writing an attached table)."""

from django.db import migrations

from embedding_site.db.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0015_sidecar_estimated_tokens"),
        ("documents", "0007_sources"),
    ]

    # Reversing leaves today's definitions: they work on the previous schema's data as well.
    operations = [
        RunSQLFile(
            "queue_admin",
            "document_triggers.sql",
            sha256="8a3c1f8194c5259b9cd8f1153448782ad448dea6dc4f263941a2f12791fa66f6",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
