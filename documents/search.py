"""Semantic search queries over the sidecar, one model at a time: checking a query, embedding
it (with a cache), and finding the nearest documents by one model's vectors.

Vectors of different models live in unrelated spaces, so one search uses the rows of exactly
one model. Which model, and whether the provider may be asked at all, is the engine's choice
(`queue_admin.searching`), which callers use.
"""

import hashlib
import unicodedata
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.functions import Left
from pgvector.django import CosineDistance

from documents.models import DocumentEmbedding
from embedding_site.db.base import version_tuple

MAX_RESULTS = 100
SNIPPET_CHARACTERS = 300
MAX_QUERY_CHARACTERS = 10_000
# RAG clients repeat the same questions; the cache (settings.CACHES, bounded, short TTL) lets
# a repeat skip the model, which is most of a search's time.
QUERY_EMBEDDING_CACHE = "query_embeddings"
# Whitespace a pasted paragraph may carry; every other control character is refused.
ALLOWED_CONTROL_CHARACTERS = "\t\n\r"


class SearchError(ValueError):
    """A query that cannot be searched; the message says why."""


@dataclass(frozen=True)
class Hit:
    document_id: str
    title: str
    score: float  # cosine similarity of the best-matching chunk, 1 is identical
    snippet: str
    model: str
    source: str  # the source's name
    # Its key in the source (a table row's primary key, as text; a JSON array for a composite
    # key), to join it back; for Sidecar's own documents, the document id.
    source_key: str
    # Where the best chunk is in a parsed file: its PDF page and heading path, when known.
    page: int | None = None
    heading: str = ""

    @property
    def citation(self) -> str:
        """'manual.pdf, page 12 — Installation › Proxies', as much of it as is known."""
        where = self.title + (f", page {self.page}" if self.page is not None else "")
        return where + (f" — {self.heading}" if self.heading else "")


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model: str
    documents_not_covered: int  # documents with text that this model has not embedded yet

    def as_dict(self) -> dict:
        """The JSON shape of the search API and `search --json`."""
        return {
            "model": self.model,
            "documents_not_covered": self.documents_not_covered,
            "results": [asdict(hit) for hit in self.hits],
        }


def embed_query(provider, query: str, before_embedding: Callable | None = None) -> np.ndarray:
    """The query's vector, from the cache when this model embedded the same text recently;
    otherwise `before_embedding(provider)` runs first (it may refuse by raising) and the
    provider embeds it.

    The key hashes the model id, its dimensions and the text: a different model (or a
    changed EMBEDDING_DIMENSIONS) never gets another's vector, and the text itself is not
    kept as a key. Provider errors propagate and nothing is cached for them.
    """
    cache = caches[QUERY_EMBEDDING_CACHE]
    key_material = f"{provider.model_id}\0{provider.dimensions}\0{query}".encode("utf-8", "surrogatepass")
    key = "query:" + hashlib.sha256(key_material).hexdigest()
    vector = cache.get(key)
    if vector is None:
        if before_embedding is not None:
            before_embedding(provider)
        vector = provider.embed([query]).vectors[0]
        cache.set(key, vector)
    return vector


# Per database connection (psycopg's, so a reconnect asks again): whether the server's
# pgvector has iterative index scans (0.8+).
_iterative_scan: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _widen_index_scan(ef_search: int) -> None:
    """For the current transaction: make the HNSW index look at `ef_search` candidates, and on
    pgvector >= 0.8 let the scan go on until enough rows pass the model filter (iterative
    scan): the index filters by model only after its search, so a table holding two models
    could otherwise return too few rows.

    Both in one statement, local to the transaction: a session setting would save the
    transaction around the search, but would leak to whoever gets the server connection next
    behind a transaction pooler, which the web processes may use (docs/deployment.md).
    """
    connection.ensure_connection()
    raw = connection.connection
    iterative = _iterative_scan.get(raw)
    with connection.cursor() as cursor:
        if iterative is None:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
            iterative = _iterative_scan[raw] = row is not None and version_tuple(row[0]) >= (0, 8)
        statement = "SELECT set_config('hnsw.ef_search', %s, true)"
        if iterative:
            statement += ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
        cursor.execute(statement, [str(ef_search)])


def check_query(query) -> None:
    """Refuse, with the reason, a query that is not text a person typed: empty, too long, or
    holding NUL or other control characters, lone surrogates (undecodable bytes from the
    command line) or U+FFFD (what Django makes of bytes in a URL or form that are not UTF-8).
    The search API, the admin's page and `manage.py search` all go through here."""
    if not isinstance(query, str) or not query.strip():
        raise SearchError("The query is empty: type a few words to search for.")
    if len(query) > MAX_QUERY_CHARACTERS:
        raise SearchError(f"The query has {len(query):,} characters; the most is {MAX_QUERY_CHARACTERS:,}.")
    if "\x00" in query:
        raise SearchError("The query contains a NUL byte.")
    for position, character in enumerate(query, start=1):
        if unicodedata.category(character) == "Cc" and character not in ALLOWED_CONTROL_CHARACTERS:
            raise SearchError(
                f"The query contains a control character (U+{ord(character):04X}) at position {position}; "
                "remove it and search again."
            )
        if "\ud800" <= character <= "\udfff" or character == "\ufffd":
            raise SearchError(
                f"The query is not valid UTF-8 text: character {position} stands for bytes that could not "
                "be decoded. Send the query as UTF-8."
            )


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_RESULTS:
        raise SearchError(f"k must be between 1 and {MAX_RESULTS}, not {k}.")


def nearest_documents(model: str, vector: np.ndarray, k: int, source_id: int | None = None) -> list[Hit]:
    """The `k` documents whose best chunk of `model` is closest to `vector`, of one source
    when `source_id` is given (filtered inside the index scan, which pgvector 0.8's iterative
    scan keeps going until enough rows pass)."""
    # Several chunks of one document may rank high: fetch extra, keep each document's best.
    wanted = k * 4
    with transaction.atomic():
        _widen_index_scan(max(settings.SEARCH_EF_SEARCH, wanted))
        chunks = DocumentEmbedding.objects.filter(model=model)
        if source_id is not None:
            chunks = chunks.filter(document__source_id=source_id)
        rows = list(
            chunks.annotate(
                distance=CosineDistance("embedding", vector), snippet=Left("source_text", SNIPPET_CHARACTERS)
            )
            .order_by("distance")
            .values_list(
                "document_id", "document__title", "distance", "snippet", "document__source__name",
                "document__source_key", "page", "heading",
            )[:wanted]
        )  # fmt: skip
    hits: dict = {}
    for document_id, title, distance, snippet, source, source_key, page, heading in rows:
        if document_id not in hits:
            score = round(1 - float(distance), 4)
            hits[document_id] = Hit(
                str(document_id), title, score, snippet, model, source, source_key or str(document_id), page,
                heading,
            )  # fmt: skip
    return list(hits.values())[:k]
