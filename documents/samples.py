"""Real sample documents, built at run time from text already on the machine.

The Python standard library's docstrings (read with `ast`, never imported: importing
arbitrary stdlib modules has side effects) and the reference-manual topics shipped in
`pydoc_data`. Nothing is copied into the repository and nothing is downloaded.
"""

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from django.db import transaction

from documents.models import SourceDocument

SOURCE = "python-stdlib"
MIN_WORDS = 40
# Packages whose docstrings are mostly test scaffolding or GUI glue, not prose.
SKIPPED_DIRS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "site-packages", "lib2to3", "ensurepip"}


def _docstrings_in(path: Path, stdlib: Path) -> Iterator[tuple[str, str, str]]:
    module = ".".join(path.relative_to(stdlib).with_suffix("").parts).removesuffix(".__init__")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield module, "module", doc
    for node in ast.walk(tree):
        if isinstance(
            node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        ) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            if doc:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield f"{module}.{node.name}", kind, doc


def iter_stdlib_documents() -> Iterator[dict]:
    """Yield sample documents as dicts (title, content, metadata), in a stable order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        topics = {}
    for name in sorted(topics):
        text = topics[name].strip()
        if len(text.split()) >= MIN_WORDS:
            yield {
                "title": f"Python reference: {name}",
                "content": text,
                "metadata": {"source": SOURCE, "kind": "reference-topic", "topic": name},
            }

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen_titles = set()
    for path in sorted(stdlib.rglob("*.py")):
        if SKIPPED_DIRS.intersection(path.relative_to(stdlib).parts):
            continue
        for title, kind, doc in _docstrings_in(path, stdlib):
            if title in seen_titles or len(doc.split()) < MIN_WORDS:
                continue
            seen_titles.add(title)
            yield {
                "title": title,
                "content": doc,
                "metadata": {"source": SOURCE, "kind": kind, "file": str(path.relative_to(stdlib))},
            }


def load_sample_documents(limit: int, batch_size: int = 500) -> tuple[int, int]:
    """Bring the number of sample documents up to `limit`, adding ones not loaded before
    (matched by title), so running it twice adds nothing.

    Steps: read the titles already loaded; walk the samples; validate each as the model
    would; insert in batches (each batch is one INSERT, so the enqueue trigger fires once per
    batch). Returns (inserted, already_present).
    """
    existing = set(SourceDocument.objects.filter(metadata__source=SOURCE).values_list("title", flat=True))
    inserted = 0
    batch: list[SourceDocument] = []
    for sample in iter_stdlib_documents():
        if len(existing) + inserted + len(batch) >= limit:
            break
        if sample["title"] in existing:
            continue
        document = SourceDocument(**sample)
        document.full_clean(validate_unique=False, validate_constraints=False)
        batch.append(document)
        if len(batch) >= batch_size:
            inserted += _insert(batch)
            batch = []
    if batch:
        inserted += _insert(batch)
    return inserted, len(existing)


def _insert(batch: list[SourceDocument]) -> int:
    with transaction.atomic():
        SourceDocument.objects.bulk_create(batch)
    return len(batch)
