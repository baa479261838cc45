"""Rebuild the sidecar's HNSW index with ef_construction 128 (was 64; m stays 16).

Why: on 100,000 text-like vectors (`python -m bench search`'s), documents.search found
0.934 of the true top 10 at ef_search 100 with the old graph (0.957 only at 150, p95 8.4 ms);
with the new one 0.971 at ef_search 100, p95 4.5 ms (measured one after the other, same data).
The price is paid once per write: each vector's insert costs PostgreSQL about
0.5 ms more CPU (1.15 → 1.65 ms, bench machinery at batch 512), small beside a model's
20–40 ms per document.

Built CONCURRENTLY under a new name while the old index keeps serving searches and writes,
then the old one is dropped and the new one takes its name (hence non-atomic). On a large
table the build takes a while: raise the server's maintenance_work_mem for it (pgvector
builds far slower once the graph outgrows it: 100,000 vectors 123 s at 64MB, 29 s at 512MB).
"""

from django.db import migrations
from pgvector.django import HnswIndex

NAME = "document_embeddings_hnsw_cos"


def _rebuild(ef_construction: int) -> list[migrations.RunSQL]:
    return [
        migrations.RunSQL(
            f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}_rebuilt"
        ),  # a build that failed half-way
        migrations.RunSQL(
            f"CREATE INDEX CONCURRENTLY {NAME}_rebuilt ON document_embeddings "
            f"USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = {ef_construction})"
        ),
        migrations.RunSQL(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}"),
        migrations.RunSQL(f"ALTER INDEX {NAME}_rebuilt RENAME TO {NAME}"),
    ]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("documents", "0005_list_order_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # Unapplied, the steps run last to first, each its reverse_sql: the same rebuild at 64.
            database_operations=[
                migrations.RunSQL(forward.sql, reverse_sql=backward.sql)
                for forward, backward in zip(_rebuild(128), reversed(_rebuild(64)), strict=True)
            ],
            state_operations=[
                migrations.RemoveIndex(model_name="documentembedding", name=NAME),
                migrations.AddIndex(
                    model_name="documentembedding",
                    index=HnswIndex(
                        name=NAME,
                        fields=["embedding"],
                        m=16,
                        ef_construction=128,
                        opclasses=["vector_cosine_ops"],
                    ),
                ),
            ],
        ),
    ]
