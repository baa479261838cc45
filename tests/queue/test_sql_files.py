"""The SQL functions and triggers live in the apps' sql/ files: the migrated database holds
exactly what they say, nothing is defined only in a migration, and no file changed without a
migration that applies it again."""

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from embedding_site.db.sql_files import RunSQLFile, read_sql, sql_file_sha256
from tests.helpers import ROOT


def files_in_the_tree():
    """(package, name) for every sql/*.sql inside a top-level package of the project."""
    found = set()
    for package in ROOT.iterdir():
        if (package / "__init__.py").exists():
            for path in package.rglob("sql/*.sql"):
                found.add((".".join(path.parent.parent.relative_to(ROOT).parts), path.name))
    return found


def newest_migration_applying_each_file():
    """(package, name) -> (migration key, RunSQLFile) of the last migration applying the file,
    listed in the order migrations first apply the files."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    # One plan, as `migrate` makes it: each leaf's plan in turn, skipping what an earlier one
    # applied. (Each leaf's plan alone would end at whatever that app depends on, and a later
    # leaf could leave an older migration of a file as the "newest".)
    plan = list(dict.fromkeys(key for leaf in graph.leaf_nodes() for key in graph.forwards_plan(leaf)))
    newest = {}
    for key in plan:
        for operation in graph.nodes[key].operations:
            if isinstance(operation, RunSQLFile):
                newest[operation.package, operation.name] = (key, operation)
    return newest


def definitions():
    """Every function and trigger of ours in the database (not the extensions'), as
    PostgreSQL itself prints them."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT 'function ' || p.oid::regprocedure, pg_get_functiondef(p.oid)
                 FROM pg_proc p
                WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind IN ('f', 'p')
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                   WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                     AND d.deptype = 'e')
               UNION ALL
               SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass,
                      pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"""
        )
        return dict(cursor.fetchall())


def apply_every_file():
    with connection.cursor() as cursor:
        for package, name in newest_migration_applying_each_file():
            cursor.execute(read_sql(package, name))


def test_every_file_in_the_tree_is_applied_by_a_migration_written_for_its_current_text():
    newest = newest_migration_applying_each_file()
    assert files_in_the_tree() == set(newest), "each sql/*.sql file needs a migration that applies it"
    for (package, name), (migration, operation) in newest.items():
        current = sql_file_sha256(package, name)
        assert operation.sha256 == current, (
            f"{package}/sql/{name} changed after {migration[0]}.{migration[1]} applied it: existing "
            f"databases keep the old version until a new migration applies it again "
            f'(RunSQLFile("{package}", "{name}", sha256="{current}"))'
        )


@pytest.mark.django_db
def test_applying_the_files_again_changes_nothing():
    before = definitions()
    assert {
        "function sidecar_enqueue(uuid[],text,boolean)",
        "trigger source_documents_enqueue_on_insert on source_documents",
    } <= set(before)

    apply_every_file()

    assert definitions() == before


@pytest.mark.django_db
def test_nothing_is_defined_only_in_a_migration():
    """Drop every function and trigger, apply only the files: the same database comes back."""
    before = definitions()
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT format('DROP TRIGGER %I ON %s', tgname, tgrelid::regclass) FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid
                WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"""
        )
        drops = [row[0] for row in cursor.fetchall()]
        drops += [
            f"DROP FUNCTION {key.removeprefix('function ')}" for key in before if key.startswith("function ")
        ]
        for statement in drops:
            cursor.execute(statement)
    assert definitions() == {}

    apply_every_file()

    assert definitions() == before


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["", "abc", "abcd", "a" * 1001, "ü" * 9])
def test_the_token_estimate_in_sql_counts_characters_as_the_providers_do(text):
    from documents.providers.tokens import CHARS_PER_TOKEN

    with connection.cursor() as cursor:
        cursor.execute("SELECT sidecar_estimated_tokens(%s)", [text])
        assert cursor.fetchone()[0] == len(text) // CHARS_PER_TOKEN + 1
