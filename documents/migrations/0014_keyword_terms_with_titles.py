"""Keyword search reads each chunk's document title too (weight A), so an exact name found only
in a title (`base64.urlsafe_b64decode`) is found: the terms trigger joins the title, a new
trigger gives a retitled document's chunks new terms, and every existing chunk's terms are made
again, in batches of 5,000 (each its own transaction: workers writing meanwhile wait at most
one batch; on a large table this takes a while, about a minute per million chunks' text).
"""

from django.db import migrations

from documents import keyword_index
from embedding_site.db.sql_files import RunSQLFile


def remake_terms(apps, schema_editor):
    keyword_index.remake_all_terms()


class Migration(migrations.Migration):
    atomic = False  # one transaction per batch of terms

    dependencies = [
        ("documents", "0013_vector_index_per_model"),
    ]

    operations = [
        RunSQLFile(
            "documents",
            "keyword_search.sql",
            sha256="55ee44dfbda9324ae3b80e8f8f601a9bd1e8667cf1fa93ae03d2ed7109ab40bd",
            reverse_sql="""DROP TRIGGER source_documents_retitle_chunk_terms ON source_documents;
                           DROP FUNCTION sidecar_retitle_chunk_terms()""",
        ),
        migrations.RunPython(remake_terms, migrations.RunPython.noop),
    ]
