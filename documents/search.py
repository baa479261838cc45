"""Semantic search over the sidecar, one model at a time.

Vectors of different models live in unrelated spaces, so one search uses the rows of exactly
one model. Normally that is the configured model. While a new EMBEDDING_MODEL is being
backfilled, search keeps using the previous model's rows (EMBEDDING_PREVIOUS_*, which also
embeds the query) until the new model covers every document, then switches by itself — no
half-and-half results. Without a previous provider configured, search uses the new model
and says how many documents it cannot see yet.
"""

import hashlib
import time
import unicodedata
import weakref
from dataclasses import asdict, dataclass

import numpy as np
from django.conf import settings
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.functions import Left
from pgvector.django import CosineDistance

from documents.models import DocumentEmbedding
from documents.providers.base import EmbeddingError
from documents.providers.factory import get_previous_provider, get_provider
from embedding_site.db.base import version_tuple

MAX_RESULTS = 100
SNIPPET_CHARACTERS = 300
MAX_QUERY_CHARACTERS = 10_000
# Coverage needs an anti-join over every document: compute it at most this often.
COVERAGE_CACHE_SECONDS = 30.0
_coverage: dict[str, tuple[float, int]] = {}
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


def documents_not_covered(model: str) -> int:
    """Documents with text and no current embedding by `model` (cached for a few seconds)."""
    cached = _coverage.get(model)
    if cached and time.monotonic() - cached[0] < COVERAGE_CACHE_SECONDS:
        return cached[1]
    # The same selection backfill uses: "missing or stale" for this model, held ones included.
    from queue_admin import backfill

    missing = backfill.count(backfill.MISSING_OR_STALE, model, include_held=True).documents
    _coverage[model] = (time.monotonic(), missing)
    return missing


def choose_provider():
    """The configured provider once its model covers every document; until then the
    previous model's provider, if one is configured."""
    current = get_provider()
    previous = get_previous_provider()
    if previous is None or documents_not_covered(current.model_id) == 0:
        return current
    return previous


def embed_query(provider, query: str) -> np.ndarray:
    """The query's vector, from the cache when this model embedded the same text recently.

    The key hashes the model id, its dimensions and the text: a different model (or a
    changed EMBEDDING_DIMENSIONS) never gets another's vector, and the text itself is not
    kept as a key. Provider errors propagate and nothing is cached for them.
    """
    cache = caches[QUERY_EMBEDDING_CACHE]
    key_material = f"{provider.model_id}\0{provider.dimensions}\0{query}".encode("utf-8", "surrogatepass")
    key = "query:" + hashlib.sha256(key_material).hexdigest()
    vector = cache.get(key)
    if vector is None:
        _refuse_while_breaker_open(provider)
        vector = provider.embed([query]).vectors[0]
        cache.set(key, vector)
    return vector


def _refuse_while_breaker_open(provider) -> None:
    """Fail fast while the workers' shared circuit breaker for this provider is open, instead
    of holding a web request through every HTTP retry against a service known to be down."""
    if not getattr(provider, "is_remote", True):
        return
    from queue_admin import config, limits

    recovery = config.current()["circuit_breaker_recovery_seconds"]
    status = limits.breaker_state(provider.model_id, recovery_seconds=recovery)
    if status.state == "open":
        raise EmbeddingError(
            f"the embedding provider is unavailable (circuit breaker open after {status.failures} failures)",
            kind="transient",
            retry_after=status.seconds_until_trial,
        )


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


def semantic_search(query: str, k: int = 10) -> SearchResult:
    """The `k` documents whose best chunk is closest to `query`, with one model's vectors."""
    check_query(query)
    if not 1 <= k <= MAX_RESULTS:
        raise SearchError(f"k must be between 1 and {MAX_RESULTS}, not {k}.")
    provider = choose_provider()
    vector = embed_query(provider, query)
    # Several chunks of one document may rank high: fetch extra, keep each document's best.
    wanted = k * 4
    with transaction.atomic():
        _widen_index_scan(max(settings.SEARCH_EF_SEARCH, wanted))
        rows = list(
            DocumentEmbedding.objects.filter(model=provider.model_id)
            .annotate(
                distance=CosineDistance("embedding", vector), snippet=Left("source_text", SNIPPET_CHARACTERS)
            )
            .order_by("distance")
            .values_list("document_id", "document__title", "distance", "snippet")[:wanted]
        )
    hits: dict = {}
    for document_id, title, distance, snippet in rows:
        if document_id not in hits:
            hits[document_id] = Hit(
                str(document_id), title, round(1 - float(distance), 4), snippet, provider.model_id
            )
    return SearchResult(list(hits.values())[:k], provider.model_id, documents_not_covered(provider.model_id))
