"""Keyword search: each chunk's words as a tsvector (document_chunk_terms, GIN-indexed), the
row saying which text search configuration makes them (document_terms_config, SEARCH_TEXT_CONFIG
when this migration runs; a name the database does not have fails here, with the ones it has),
the triggers that keep them for every writer of the sidecar (documents/sql/keyword_search.sql),
and the terms of the chunks already there. A later change of configuration needs no
migration, only `manage.py rebuild_search_index` (documents/keyword_index.py).
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from documents import keyword_index
from embedding_site.db.sql_files import RunSQLFile

# Deleting a chunk deletes its terms in the database, whoever deletes it.
TERMS_CASCADE = """
ALTER TABLE document_chunk_terms ADD CONSTRAINT document_chunk_terms_chunk_fk
  FOREIGN KEY (embedding_id) REFERENCES document_embeddings (id) ON DELETE CASCADE"""

# Not a Django model: a test's flush must not empty it (the triggers need its row).
CONFIG_TABLE = f"""
CREATE TABLE {keyword_index.CONFIG_TABLE} (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    config text NOT NULL,
    rebuilding_from text
)"""


def configure_and_index_existing_chunks(apps, schema_editor):
    config = keyword_index.resolve_config(settings.SEARCH_TEXT_CONFIG)
    schema_editor.execute(f"INSERT INTO {keyword_index.CONFIG_TABLE} (config) VALUES (%s)", [config])
    keyword_index.rebuild(config)


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0009_file_sources"),
    ]

    operations = [
        migrations.CreateModel(
            name="ChunkTerms",
            fields=[
                (
                    "chunk",
                    models.OneToOneField(
                        db_column="embedding_id",
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="terms",
                        serialize=False,
                        to="documents.documentembedding",
                    ),
                ),
                ("document_id", models.UUIDField()),
                ("model", models.CharField(max_length=200)),
                ("config", models.TextField(help_text="The text search configuration that made `terms`")),
                ("terms", django.contrib.postgres.search.SearchVectorField()),
            ],
            options={
                "db_table": "document_chunk_terms",
                "indexes": [
                    django.contrib.postgres.indexes.GinIndex(
                        fields=["terms"], name="document_chunk_terms_gin"
                    )
                ],
            },
        ),
        migrations.RunSQL(TERMS_CASCADE, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(CONFIG_TABLE, reverse_sql=f"DROP TABLE {keyword_index.CONFIG_TABLE}"),
        RunSQLFile(
            "documents",
            "keyword_search.sql",
            sha256="d26df30aa4394bb84e3b930b5cd2b7ea472a8500a312e7175a009d232453970e",
            reverse_sql="""DROP TRIGGER document_embeddings_terms_after_insert ON document_embeddings;
                           DROP TRIGGER document_embeddings_terms_after_update ON document_embeddings;
                           DROP FUNCTION sidecar_write_chunk_terms()""",
        ),
        migrations.RunPython(configure_and_index_existing_chunks, migrations.RunPython.noop),
    ]
