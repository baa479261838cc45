"""An existing database upgrades to sources without re-embedding anything: every document
joins the built-in source, its embeddings and queue history stay as they were."""

import psycopg
import pytest

from tests.helpers import ROOT, database_url, manage

# A migration applies today's SQL file even on the way to an old state; a database of the
# release before sources held these definitions of the enqueue triggers.
TRIGGERS_BEFORE_SOURCES = ROOT / "tests" / "fixtures" / "document_triggers_before_sources.sql"

pytestmark = pytest.mark.django_db

DATABASE = "sidecar_upgrade_to_sources"


@pytest.fixture
def old_database():
    admin_url = database_url()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    url = admin_url.rsplit("/", 1)[0] + "/" + DATABASE
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def migrate(url, *target):
    result = manage("migrate", *target, "--no-input", env_overrides={"DATABASE_URL": url, "DEBUG": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


def test_documents_join_the_built_in_source_and_nothing_is_queued(old_database):
    migrate(old_database, "queue_admin", "0015")  # the release before sources
    with psycopg.connect(old_database, autocommit=True) as conn:
        conn.execute(TRIGGERS_BEFORE_SOURCES.read_text())
        conn.execute(
            "INSERT INTO source_documents (title, content) SELECT 'Doc ' || n, 'Text ' || n FROM generate_series(1, 50) n"
        )
        conn.execute(
            """INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash,
                                                document_text_hash, embedding, model, token_count, created_at, updated_at)
               SELECT id, 0, content, md5(content), md5(content), array_fill(0.1, ARRAY[384])::vector, 'm', 2, now(), now()
                 FROM source_documents"""
        )
        conn.execute("UPDATE embedding_queue SET status = 'completed'")
        before = (
            conn.execute("SELECT count(*), max(updated_at) FROM embedding_queue").fetchone(),
            conn.execute("SELECT id, content_hash, updated_at FROM source_documents ORDER BY id").fetchall(),
        )
    migrate(old_database)
    with psycopg.connect(old_database, autocommit=True) as conn:
        after = (
            conn.execute("SELECT count(*), max(updated_at) FROM embedding_queue").fetchone(),
            conn.execute("SELECT id, content_hash, updated_at FROM source_documents ORDER BY id").fetchall(),
        )
        assert after == before  # no row rewritten, nothing queued
        assert conn.execute("SELECT DISTINCT source_id, source_key FROM source_documents").fetchall() == [
            (1, None)
        ]
        assert conn.execute("SELECT id, name, kind FROM document_sources").fetchall() == [
            (1, "documents", "builtin")
        ]
        # and a new document still goes to the queue, at the built-in source's priority
        conn.execute("INSERT INTO source_documents (title, content) VALUES ('new', 'after the upgrade')")
        assert conn.execute("SELECT priority FROM embedding_queue WHERE status = 'pending'").fetchall() == [
            ("medium",)
        ]
