"""Candidates for the shipped judgments of the sample corpus (documents/sample_judgments.jsonl),
printed for a person to read and judge: for each query, the sample documents (of the first
500, as `make demo` loads) whose title matches the query's concept pattern or whose text
contains one of its terms. Run: DEBUG=1 python -m documents.sample_judgments_candidates

What went into the file is what a reading of these kept: the documents that answer the query.
"""

import itertools
import re

# query -> (title pattern, terms any of which in the text makes a candidate)
CONCEPTS = {
    "how do I encode binary data as base64 text": (r"^base64\.", ["base64"]),
    "decode a URL-safe base64 string": (r"^base64\.", ["urlsafe"]),
    "run a coroutine with a time limit": (r"^asyncio\.(tasks|timeouts)", ["timeout"]),
    "wait for several async tasks and collect their results": (r"^asyncio\.tasks", ["gather", "awaitables"]),
    "keep a task running even if the caller is cancelled": (r"^asyncio\.tasks", ["cancel"]),
    "call a blocking function from async code without blocking the event loop": (r"^asyncio", ["thread"]),
    "suggest the closest word to a misspelled one": (r"^difflib", ["close matches", "similar"]),
    "show the differences between two files as a unified diff": (r"^difflib", ["unified", "diff"]),
    "count how many times each item occurs": (r"^collections", ["count"]),
    "tuple with named fields": (r"^collections", ["named"]),
    "safely evaluate a string that contains a Python literal": (r"^ast", ["literal"]),
    "parse command line options and arguments": (
        r"^(argparse|getopt|distutils.fancy_getopt)",
        ["command line"],
    ),
    "turn a dataclass instance into a dict": (r"^dataclasses", ["dict"]),
    "copy a dataclass object with some fields changed": (r"^dataclasses", ["replace"]),
    "read settings from an INI configuration file": (r"^configparser", ["configuration file", "ini"]),
    "insert into a list and keep it sorted": (r"^bisect", ["insert"]),
    "binary search for the position of a value in a sorted list": (r"^bisect", ["sorted"]),
    "open a bzip2 compressed file": (r"^bz2", ["bzip2"]),
    "find out which functions of my program are slow": (r"^(cProfile|profile)", ["profil"]),
    "a context manager that does nothing": (r"^contextlib", ["context manager"]),
    "enter a variable number of context managers": (r"^contextlib", ["ExitStack"]),
    "make a deep copy of nested objects": (r"^copy", ["deep copy", "deepcopy"]),
    "run the examples in docstrings as tests": (r"^doctest", ["docstring"]),
    "length of time between two dates": (r"^datetime", ["duration", "difference"]),
    "how does the with statement work": (r"^Python reference: (with|context)", ["with statement"]),
    "which values count as false in an if statement": (r"^Python reference: (truth|booleans|if)", ["false"]),
    "formatted string literals with expressions inside": (
        r"^Python reference: (formatstrings|strings)",
        ["f-string", "formatted string"],
    ),
    "handling exceptions with try except finally": (
        r"^Python reference: (try|exceptions|raise)",
        ["finally"],
    ),
    "assign to a variable of an enclosing function from a nested function": (
        r"^Python reference: (nonlocal|global|naming)",
        ["enclosing"],
    ),
    "round a decimal number to two places": (
        r"^_pydecimal\.(quantize|to_integral|normalize|Context|Rounded)",
        ["round"],
    ),
    "urlsafe_b64decode": (r"^base64\.", ["urlsafe_b64decode"]),
    "namedtuple": (r"^collections", ["namedtuple"]),
    "get_close_matches": (r"^difflib", ["get_close_matches"]),
    "fix_missing_locations": (r"^ast", ["fix_missing_locations"]),
    "asyncio gather": (r"^asyncio\.tasks", ["gather"]),
}


def candidates(documents, pattern: str, terms: list[str]):
    for document in documents:
        text = document["content"].lower()
        if re.search(pattern, document["title"]) or any(term.lower() in text for term in terms):
            yield document


def main(limit: int = 500):
    import django

    django.setup()
    from documents.samples import iter_stdlib_documents

    documents = list(itertools.islice(iter_stdlib_documents(), limit))
    for query, (pattern, terms) in CONCEPTS.items():
        print(f"\n## {query}")
        for document in candidates(documents, pattern, terms):
            print(f"  {document['title']}: {' '.join(document['content'].split())[:160]}")


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedding_site.settings")
    main()
