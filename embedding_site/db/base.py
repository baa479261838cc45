"""Django's PostgreSQL backend, plus the things every Sidecar process needs first.

1. With no DATABASE_URL, the embedded PostgreSQL is started (or found running) before the
   first connection, so any manage.py command, the tests and the workers just work.
2. Once per process, the server is checked for pgvector >= 0.7, so a database without the
   extension fails with the fix in the message instead of an obscure SQL error later.
3. With DATABASE_SCHEMA set, every connection works in that schema: created if missing, first
   on the search path, and the only one Django's introspection looks at (introspection.py).
"""

import threading

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base

from embedding_site.db.introspection import DatabaseIntrospection

MIN_PGVECTOR = (0, 7)

_checked = threading.Event()
_lock = threading.Lock()


def version_tuple(text: str) -> tuple[int, ...]:
    """'0.8.5' → (0, 8, 5), for comparing extension versions."""
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class DatabaseWrapper(base.DatabaseWrapper):
    introspection_class = DatabaseIntrospection

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

    def _configure_connection(self, connection):
        # Django's hook for each new server connection, direct or from its pool, after SET ROLE
        # (OPTIONS assume_role), so the schema belongs to the role that will own the tables.
        commit = super()._configure_connection(connection)
        # The no-database connection is the one Django opens to the `postgres` database to
        # create or drop the test database; Sidecar's schema has no business there.
        if settings.DATABASE_SCHEMA and self.alias != NO_DB_ALIAS:
            try:
                use_schema(connection, settings.DATABASE_SCHEMA)
            except BaseException:
                connection.close()  # without our search path, queries would reach the host's tables
                raise
            commit = True
        return commit


def use_schema(connection, schema: str) -> None:
    """Create `schema` if it is missing and put it first on this connection's search path.

    A SET per connection rather than `-c search_path=...` in the connection's startup options:
    PgBouncer refuses or drops startup options, a SET passes through any pooler. Behind a
    transaction pooler neither lasts beyond one transaction; there the role's own default must
    say it (ALTER ROLE ... SET search_path; docs/configuration.md). The server's search path
    stays after ours, so an extension installed in public (pgvector's `vector`, `<=>`) or in
    another schema on that path (Supabase's `extensions`) still resolves.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT set_config('search_path',
                                 concat_ws(', ', quote_ident(%s), nullif(current_setting('search_path'), '')),
                                 false),
                      (SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = %s)""",
            [schema, schema],
        )
        _, may_use = cursor.fetchone()
        if may_use is None:
            create_schema(cursor, schema)
        elif not may_use:
            # A search path skips a schema its role may not use: tables would go to public.
            raise ImproperlyConfigured(
                f"DATABASE_SCHEMA={schema}: role {connection.info.user} may not use schema {schema}. "
                f"As its owner or an administrator run: GRANT USAGE, CREATE ON SCHEMA {schema} TO "
                f"{connection.info.user};"
            )


def create_schema(cursor, schema: str) -> None:
    # Only when missing: CREATE SCHEMA checks the database privilege even when the schema exists,
    # and a role may well have been given a schema an administrator created.
    try:
        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except psycopg.errors.InsufficientPrivilege:
        user, database = cursor.connection.info.user, cursor.connection.info.dbname
        raise ImproperlyConfigured(
            f"DATABASE_SCHEMA={schema}: schema {schema} does not exist and role {user} may not create "
            f"it in database {database}. Either GRANT CREATE ON DATABASE {database} TO {user}; or have "
            f"an administrator run: CREATE SCHEMA {schema} AUTHORIZATION {user};"
        ) from None


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
