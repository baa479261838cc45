"""The queue's words are written once (queue_admin/vocabulary.py); where SQL must spell them —
the .sql files, and the domain layer, which cannot import the engine — this checks that it
spells only those words, and that every status list it writes is one of the vocabulary's."""

import re

from documents.providers.base import ERROR_KINDS
from queue_admin import vocabulary
from tests.helpers import ROOT

STATUS_WORD = re.compile(r"status\s*(?:=|<>)\s*'(\w+)'|status = CASE WHEN [^']*? THEN '(\w+)' ELSE '(\w+)'")
STATUS_LIST = re.compile(r"status IN \(((?:'\w+'(?:,\s*)?)+)\)")
NAMED_LISTS = {frozenset(vocabulary.LIVE), frozenset(vocabulary.CLAIMABLE), frozenset(vocabulary.RETRYABLE)}


def sources():
    """Code that writes SQL about queue items: the engine (migrations are history, left out),
    its .sql files, and the domain layer."""
    for package in ("queue_admin", "documents"):
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix in (".py", ".sql") and "migrations" not in path.parts:
                yield path


def test_sql_spells_only_statuses_of_the_vocabulary():
    statuses = set(vocabulary.Status.values)
    found = {}
    for path in sources():
        text = path.read_text()
        for match in STATUS_WORD.finditer(text):
            for word in filter(None, match.groups()):
                found.setdefault(word, path.relative_to(ROOT))
        for match in STATUS_LIST.finditer(text):
            for word in re.findall(r"'(\w+)'", match.group(1)):
                found.setdefault(word, path.relative_to(ROOT))
    assert {"pending", "processing", "completed", "failed"} <= set(found)  # the scan sees the SQL
    assert {word: where for word, where in found.items() if word not in statuses} == {}


def test_every_status_list_written_out_is_one_of_the_vocabulary():
    lists = {}
    for path in sources():
        for match in STATUS_LIST.finditer(path.read_text()):
            lists.setdefault(frozenset(re.findall(r"'(\w+)'", match.group(1))), path.relative_to(ROOT))
    assert lists, "no status list found: the pattern no longer matches the SQL"
    assert {words: where for words, where in lists.items() if words not in NAMED_LISTS} == {}


def test_the_queue_stores_exactly_the_providers_error_kinds():
    assert set(vocabulary.ErrorKind.values) == ERROR_KINDS


def test_sql_lists_are_quoted_literals():
    assert vocabulary.sql_list(vocabulary.CLAIMABLE) == "'pending', 'rate_limited'"
