"""Upgrading a database that has the old shared HNSW index (documents migrations 0013, 0014):
each model already past VECTOR_INDEX_MIN_ROWS gets its own index before the shared one is
dropped, a model below it gets none, and the chunks already there get keyword terms with their
titles. On a database of its own on the test server, migrated by `manage.py migrate` as an
operator runs it."""

import os
import subprocess
import sys

import psycopg
import pytest

from documents import vector_index
from tests.helpers import ROOT, database_url

DATABASE = "sidecar_upgrade_check"


def migrate(*target: str) -> None:
    env = dict(os.environ, DATABASE_URL=database_url(DATABASE), DEBUG="1", VECTOR_INDEX_MIN_ROWS="5")
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0", *target],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def scratch_database(django_db_blocker):
    with django_db_blocker.unblock(), psycopg.connect(database_url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
        try:
            yield
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


@pytest.mark.slow
@pytest.mark.django_db
def test_an_upgrade_gives_each_big_model_its_own_index_then_drops_the_shared_one(scratch_database):
    migrate("documents", "0012")
    with psycopg.connect(database_url(DATABASE), autocommit=True) as conn:
        conn.execute(
            """INSERT INTO source_documents (title, content)
               SELECT 'base64.urlsafe_b64decode ' || n, 'text ' || n FROM generate_series(1, 8) n"""
        )
        # 8 chunks of "big-model" (past the threshold of 5), 2 of "small-model".
        conn.execute(
            """INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash,
                       document_text_hash, embedding, model, token_count, created_at, updated_at)
               SELECT d.id, 0, d.content, 'h', 'h', array_fill(0.1, ARRAY[384])::vector,
                      'big-model', 3, now(), now()
                 FROM source_documents d"""
        )
        conn.execute(
            """INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash,
                       document_text_hash, embedding, model, token_count, created_at, updated_at)
               SELECT d.id, 1, d.content, 'h', 'h', array_fill(0.2, ARRAY[384])::vector, 'small-model', 3, now(), now()
                 FROM source_documents d LIMIT 2"""
        )
        assert conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'document_embeddings_hnsw_cos'"
        ).fetchone() == (1,)

    migrate()

    with psycopg.connect(database_url(DATABASE), autocommit=True) as conn:
        indexes = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'document_embeddings' AND indexdef LIKE '%hnsw%'"
            ).fetchall()
        )
        assert set(indexes) == {vector_index.index_name("big-model")}
        assert "WHERE ((model)::text = 'big-model'::text)" in indexes[vector_index.index_name("big-model")]
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
            [vector_index.index_name("big-model")],
        ).fetchone()
        assert valid == (True,)
        # The chunks already there have their titles among their words (migration 0014).
        found = conn.execute(
            """SELECT count(*) FROM document_chunk_terms
                WHERE terms @@ websearch_to_tsquery('simple', 'urlsafe_b64decode')"""
        ).fetchone()
        assert found == (10,)
