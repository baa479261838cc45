"""Semantic search as people and programs run it (the admin's page, /api/search, `manage.py
search`): which model answers, whether its provider may be asked, and the query itself
(`documents.search`).

Normally the configured model answers. While a new EMBEDDING_MODEL is being backfilled,
search keeps using the previous model's rows (EMBEDDING_PREVIOUS_*, which also embeds the
query) until the new model covers every document, then switches by itself — no half-and-half
results. Without a previous provider configured, search uses the new model and says how many
documents it cannot see yet.
"""

import time

from documents.models import Source
from documents.providers.base import EmbeddingError
from documents.providers.factory import get_previous_provider, get_provider
from documents.search import SearchError, SearchResult, check_k, check_query, embed_query, nearest_documents
from queue_admin import backfill, config, limits

# Coverage needs an anti-join over every document: compute it at most this often.
COVERAGE_CACHE_SECONDS = 30.0
_coverage: dict[str, tuple[float, int]] = {}


def semantic_search(query: str, k: int = 10, source: str | None = None) -> SearchResult:
    """The `k` documents whose best chunk is closest to `query`, with one model's vectors;
    only documents of the source named `source`, if given."""
    check_query(query)
    check_k(k)
    source_id = source_id_of(source) if source else None
    provider = choose_provider()
    vector = embed_query(provider, query, before_embedding=refuse_while_breaker_open)
    hits = nearest_documents(provider.model_id, vector, k, source_id)
    return SearchResult(hits, provider.model_id, documents_not_covered(provider.model_id))


def source_id_of(name: str) -> int:
    """The id of the source called `name`, or a SearchError that lists the sources."""
    found = Source.objects.filter(name=name).values_list("pk", flat=True).first()
    if found is None:
        names = ", ".join(Source.objects.values_list("name", flat=True))
        raise SearchError(f"There is no source named {name!r}; the sources are: {names}.")
    return found


def documents_not_covered(model: str) -> int:
    """Documents with text and no current embedding by `model` (cached for a few seconds)."""
    cached = _coverage.get(model)
    if cached and time.monotonic() - cached[0] < COVERAGE_CACHE_SECONDS:
        return cached[1]
    # The same selection backfill uses: "missing or stale" for this model, held ones included.
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


def refuse_while_breaker_open(provider) -> None:
    """Fail fast while the workers' shared circuit breaker for this provider is open, instead
    of holding a web request through every HTTP retry against a service known to be down."""
    if not provider.is_remote:
        return
    recovery = config.current().circuit_breaker_recovery_seconds
    status = limits.breaker_state(provider.model_id, recovery_seconds=recovery)
    if status.state == "open":
        raise EmbeddingError(
            f"the embedding provider is unavailable (circuit breaker open after {status.failures} failures)",
            kind="transient",
            retry_after=status.seconds_until_trial,
        )
