"""The vector index policy (documents/vector_index.py): one HNSW index per model, built when a
model has VECTOR_INDEX_MIN_ROWS chunks, in place of one index over every model's rows.

First each model that already has that many chunks gets its own index, CONCURRENTLY (search
keeps its index all along; writers carry on); then the shared index is dropped, CONCURRENTLY.
On a large table the builds take a while (about a minute per 100,000 chunks at
VECTOR_INDEX_BUILD_MEMORY_MB 512). Reversing rebuilds the shared index and drops the per-model
ones.
"""

from django.conf import settings
from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations

from documents import vector_index


def models_with_enough_chunks(connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT model FROM document_embeddings GROUP BY model HAVING count(*) >= %s ORDER BY model",
            [max(settings.VECTOR_INDEX_MIN_ROWS, 1)],
        )
        return [model for (model,) in cursor.fetchall()]


def build_per_model(apps, schema_editor):
    for model in models_with_enough_chunks(schema_editor.connection):
        vector_index.build(model)


def drop_per_model(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT model FROM document_embeddings")
        for (model,) in cursor.fetchall():
            vector_index.drop(model)


class Migration(migrations.Migration):
    atomic = False  # CREATE / DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("documents", "0012_metadata_index"),
    ]

    operations = [
        migrations.RunPython(build_per_model, drop_per_model),
        RemoveIndexConcurrently(model_name="documentembedding", name="document_embeddings_hnsw_cos"),
    ]
