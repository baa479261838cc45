"""The texts benchmarks embed: a deterministic synthetic generator, and real prose from this machine.

Synthetic texts use a fixed seed, so every run (and every scenario) embeds the same texts;
real texts come from the Python standard library's docstrings and `pydoc_data` topics
(documents.samples), read at run time and repeated if more are asked for than exist.
"""

import itertools
import random

SEED = 1234
DEFAULT_WORDS_PER_DOC = 120

# Common English words plus the project's vocabulary: WordPiece splits them like prose.
WORDS = (
    "the of and to in is that for it as was with be by on not this are or from at which but have "
    "an they you were her she there one all we their been has when who will more no if out so said "
    "what up its about into than them can only other new some could time these two may then do first "
    "any now such like our over even most made after also did many before must through back years "
    "where much your way well down should because each just those people data queue worker model "
    "vector database search document update index lease batch retry table column server request"
).split()

CORPORA = ("synthetic", "stdlib")


def synthetic_documents(
    count: int, words_per_doc: int = DEFAULT_WORDS_PER_DOC, seed: int = SEED
) -> list[dict]:
    """`count` documents (title, content) of `words_per_doc` words each, the same on every run.

    The document number leads each text so no two texts are equal (the enqueue trigger and
    the worker skip a text whose hash the sidecar already holds)."""
    rng = random.Random(seed)
    return [
        {"title": f"bench-{n}", "content": f"document {n}: " + " ".join(rng.choices(WORDS, k=words_per_doc))}
        for n in range(count)
    ]


def stdlib_documents(count: int) -> list[dict]:
    """`count` real documents from the Python standard library, cycled (with a numbered title
    and a distinguishing first line) when the machine has fewer."""
    from documents.samples import iter_stdlib_documents

    samples = list(itertools.islice(iter_stdlib_documents(), count))
    if not samples:
        raise RuntimeError("no standard-library documents found on this machine; use --corpus synthetic")
    documents = []
    for n in range(count):
        sample = samples[n % len(samples)]
        content = sample["content"] if n < len(samples) else f"copy {n // len(samples)}\n{sample['content']}"
        documents.append({"title": f"bench-{n}: {sample['title']}"[:200], "content": content})
    return documents


def documents_for(corpus: str, count: int, words_per_doc: int = DEFAULT_WORDS_PER_DOC) -> list[dict]:
    if corpus == "synthetic":
        return synthetic_documents(count, words_per_doc)
    if corpus == "stdlib":
        return stdlib_documents(count)
    raise ValueError(f"unknown corpus {corpus!r}; choose from {', '.join(CORPORA)}")


def describe(corpus: str, count: int, words_per_doc: int = DEFAULT_WORDS_PER_DOC) -> str:
    if corpus == "synthetic":
        return f"synthetic, {count} documents of {words_per_doc} words (seed {SEED})"
    return f"Python standard library docstrings and pydoc_data topics, {count} documents"
