"""Django's PostgreSQL introspection, confined to DATABASE_SCHEMA when that is set.

Django decides which tables exist with pg_table_is_visible(), i.e. by the search path. With
`sidecar, public` that is also true of a public table that sidecar lacks: before Sidecar's first
migrate, the host application's public.django_migrations would pass for Sidecar's own history
(and migrate would read and write it), and flush or a test's teardown would list the host's
tables. So every catalog query Django's introspection runs asks for our schema instead.
"""

import re

from django.conf import settings
from django.db.backends.postgresql import introspection

_VISIBLE = re.compile(r"pg_catalog\.pg_table_is_visible\((\w+)\.oid\)")


class DatabaseIntrospection(introspection.DatabaseIntrospection):
    # Every method of Django's that filters pg_class by visibility; the others build on these.
    def get_table_list(self, cursor):
        return super().get_table_list(in_own_schema(cursor))

    def get_table_description(self, cursor, table_name):
        return super().get_table_description(in_own_schema(cursor), table_name)

    def get_sequences(self, cursor, table_name, table_fields=()):
        return super().get_sequences(in_own_schema(cursor), table_name, table_fields)

    def get_relations(self, cursor, table_name):
        return super().get_relations(in_own_schema(cursor), table_name)

    def get_constraints(self, cursor, table_name):
        return super().get_constraints(in_own_schema(cursor), table_name)


def in_own_schema(cursor):
    schema = settings.DATABASE_SCHEMA
    return OwnSchemaCursor(cursor, schema) if schema else cursor


class OwnSchemaCursor:
    """A cursor on which `pg_table_is_visible(x.oid)` means "x is in `schema`"."""

    def __init__(self, cursor, schema: str):
        self._cursor = cursor
        # A literal is safe here: settings allow only a plain lowercase identifier.
        self._in_schema = rf"\1.relnamespace = '{schema}'::regnamespace"

    def execute(self, sql, params=None):
        sql, confined = _VISIBLE.subn(self._in_schema, sql)
        if "pg_class" in sql and not confined:
            # A newer Django asks differently: fail rather than see the host's tables.
            raise RuntimeError(
                "Django's introspection queries pg_class without pg_table_is_visible(); "
                "embedding_site/db/introspection.py must learn the new query before DATABASE_SCHEMA "
                f"can be trusted:\n{sql}"
            )
        return self._cursor.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._cursor, name)
