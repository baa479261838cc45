"""SQL functions and triggers are kept, in their current version only, in each app's `sql/`
folder; migrations apply them with `RunSQLFile`."""

import hashlib
from importlib.resources import files

from django.db import migrations


def read_sql(package: str, name: str) -> str:
    """The text of `<package>/sql/<name>`."""
    return files(package).joinpath("sql", name).read_text(encoding="utf-8")


def sql_file_sha256(package: str, name: str) -> str:
    return hashlib.sha256(read_sql(package, name).encode()).hexdigest()


class RunSQLFile(migrations.RunSQL):
    """Runs the file's text as it is today, so a fresh database gets today's version even from
    an old migration. `sha256` is the text the migration was written for: a test fails when the
    newest migration applying a file names another, so an edit cannot skip the migration that
    takes it to existing databases."""

    def __init__(self, package: str, name: str, sha256: str, reverse_sql=None):
        super().__init__(read_sql(package, name), reverse_sql=reverse_sql)
        self.package, self.name, self.sha256 = package, name, sha256

    def describe(self):
        return f"Apply {self.package}/sql/{self.name}"

    def deconstruct(self):
        kwargs = {"reverse_sql": self.reverse_sql} if self.reverse_sql is not None else {}
        return self.__class__.__qualname__, [self.package, self.name, self.sha256], kwargs
