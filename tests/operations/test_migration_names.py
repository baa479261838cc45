"""Migrations renamed after what they change still count as applied on a database that ran them
under their old names (`replaces`), and `migrate` records the new names."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

RENAMED = {
    "0011_provider_limits_sliding_window": "0011_chaos_rate_window",
    "0012_drop_duplicate_document_index": "0012_bench6_drop_duplicate_document_index",
}


def recorded() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM django_migrations WHERE app = 'queue_admin'")
        return {row[0] for row in cursor.fetchall()}


def test_a_database_migrated_under_the_old_names_has_nothing_to_apply(sql):
    assert set(RENAMED) <= recorded()
    for new, old in RENAMED.items():  # as a database migrated before the rename holds them
        sql("UPDATE django_migrations SET name = %s WHERE app = 'queue_admin' AND name = %s", [old, new])
    try:
        executor = MigrationExecutor(connection)
        assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
        executor.check_replacements()  # what `migrate` does first: record the new names
        assert set(RENAMED) <= recorded()
    finally:
        sql(
            "DELETE FROM django_migrations WHERE app = 'queue_admin' AND name = ANY(%s)",
            [list(RENAMED.values())],
        )
        for new in RENAMED:
            if new not in recorded():
                sql(
                    "INSERT INTO django_migrations (app, name, applied) VALUES ('queue_admin', %s, now())",
                    [new],
                )
