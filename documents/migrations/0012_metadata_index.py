"""A GIN index (jsonb_path_ops) on source_documents.metadata, for search's metadata filter.

Built CONCURRENTLY: the table may hold millions of documents while the application and the
mirror triggers write to it, and a plain CREATE INDEX would block their writes for the build.
"""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("documents", "0011_search_quality"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="sourcedocument",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["metadata"], name="source_documents_metadata_gin", opclasses=["jsonb_path_ops"]
            ),
        ),
    ]
