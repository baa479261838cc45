"""The database's state as a value, so a test can say "nothing changed" about every table at
once instead of the few it thought of: each table's row count and a hash of its rows.

Tables that change because someone merely visited (sessions, the login throttle's access
log) are left out by default.
"""

from django.db import connection

VISIT_TABLES = frozenset({"django_session", "axes_accesslog", "axes_accessattempt", "axes_accessfailurelog"})


def tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return [name for (name,) in cursor.fetchall()]


def fingerprint(exclude: frozenset[str] = VISIT_TABLES) -> dict[str, tuple[int, str]]:
    """{table: (rows, md5 of its rows in a stable order)} for every table but `exclude`."""
    state = {}
    with connection.cursor() as cursor:
        for table in tables():
            if table in exclude:
                continue
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM \"{table}\" t"
            )
            state[table] = cursor.fetchone()
    return state


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def text_columns() -> list[tuple[str, str]]:
    """(table, column) of every column that can hold text: where a leaked secret would sit."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
            "AND c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea') "
            "ORDER BY 1, 2"
        )
        return cursor.fetchall()


def rows_containing(needle: str) -> dict[str, int]:
    """{"table.column": rows} where any text column holds `needle` (as text or bytes)."""
    found = {}
    with connection.cursor() as cursor:
        for table, column in text_columns():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" WHERE position(%s IN "{column}"::text) > 0 '
                f'OR ("{column}"::text LIKE %s)',
                [needle, f"%{needle.encode().hex()}%"],
            )
            (count,) = cursor.fetchone()
            if count:
                found[f"{table}.{column}"] = count
    return found
