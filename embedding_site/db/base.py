"""Django's PostgreSQL backend, plus the two things every Sidecar process needs first.

1. With no DATABASE_URL, the embedded PostgreSQL is started (or found running) before the
   first connection, so any manage.py command, the tests and the workers just work.
2. Once per process, the server is checked for pgvector >= 0.7, so a database without the
   extension fails with the fix in the message instead of an obscure SQL error later.
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base

MIN_PGVECTOR = (0, 7)

_checked = threading.Event()
_lock = threading.Lock()


def version_tuple(text: str) -> tuple[int, ...]:
    """'0.8.5' → (0, 8, 5), for comparing extension versions."""
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        if settings.EMBEDDED_DB:
            from embedding_site import embedded_pg

            embedded_pg.ensure_running(settings.EMBEDDED_DB_DIR, settings.EMBEDDED_DB_PORT)
        connection = super().get_new_connection(conn_params)
        if not _checked.is_set():
            with _lock:
                if not _checked.is_set():
                    check_pgvector(connection)
                    _checked.set()
        return connection


def check_pgvector(connection) -> None:
    """Raise ImproperlyConfigured unless pgvector >= 0.7 is installed or installable."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
        )
        row = cursor.fetchone()
    if connection.info.transaction_status != 0:  # leave no transaction open behind us
        connection.rollback()
    if row is None:
        raise ImproperlyConfigured(
            "The PostgreSQL server has no pgvector extension (CREATE EXTENSION vector would fail). "
            "Install pgvector >= 0.7 on the server, or on a managed service enable the 'vector' "
            "extension (Supabase: Database → Extensions → vector; RDS/Neon: CREATE EXTENSION vector)."
        )
    default_version, installed_version = row
    version = installed_version or default_version
    if version_tuple(version) < MIN_PGVECTOR:
        raise ImproperlyConfigured(
            f"pgvector {version} is too old; Sidecar needs pgvector >= 0.7 (HNSW indexes, "
            "halfvec). Upgrade it with ALTER EXTENSION vector UPDATE."
        )
