"""Search as people and programs run it (the admin's page, /api/search, `manage.py search`):
which model answers, whether its provider may be asked, and the query itself
(`documents.search`).

Normally the configured model answers. While a new EMBEDDING_MODEL is being backfilled,
search keeps using the previous model's rows (EMBEDDING_PREVIOUS_*, which also embeds the
query) until the new model covers every document and its vector index is built (when it has
enough chunks to need one), then switches by itself — no half-and-half results, and no
searches reading a large model's chunks one by one. Without a previous provider configured,
search uses the new model and says how many documents it cannot see yet.
"""

import logging
import time
from datetime import datetime

from django.conf import settings

from documents import vector_index
from documents.models import Source
from documents.providers.base import EmbeddingError
from documents.providers.factory import get_previous_provider, get_provider
from documents.search import (
    DEFAULT_MODE,
    Filters,
    SearchError,
    SearchResult,
    check_k,
    check_metadata_filter,
    check_mode,
    check_query,
    check_time_range,
    embed_query,
    search_documents,
)
from queue_admin import backfill, config, limits

logger = logging.getLogger("sidecar.search")

# Coverage needs an anti-join over every document: compute it at most this often.
COVERAGE_CACHE_SECONDS = 30.0
_coverage: dict[str, tuple[float, int]] = {}
_warned_about: set[str] = set()


def search(
    query: str,
    k: int = 10,
    *,
    mode: str = DEFAULT_MODE,
    source: str | None = None,
    metadata: dict | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
) -> SearchResult:
    """The `k` documents that best answer `query`, with one model's chunks: `mode` hybrid
    (vector and keyword lists fused), vector or keyword. Only documents of the source named
    `source`, whose metadata contains `metadata`, updated in [updated_after, updated_before),
    where given. Keyword mode never asks the embedding provider."""
    check_query(query)
    check_k(k)
    check_mode(mode)
    check_time_range(updated_after, updated_before)
    filters = Filters(
        source_id_of(source) if source else None,
        check_metadata_filter(metadata) if metadata is not None else {},
        updated_after,
        updated_before,
    )
    provider = choose_provider()
    vector = None
    if mode != "keyword":
        vector = embed_query(provider, query, before_embedding=refuse_while_breaker_open)
    found = search_documents(provider.model_id, query, k, mode, filters, vector)
    notices = text_config_notices(found.configs) if mode != "vector" else ()
    return SearchResult(
        found.hits,
        provider.model_id,
        documents_not_covered(provider.model_id),
        mode,
        found.configs.config,
        notices,
    )


def text_config_notices(configs) -> tuple[str, ...]:
    """What keyword search's answer should say about its text search configuration: that it
    is not SEARCH_TEXT_CONFIG yet, or that a change of configuration has not finished. Logged
    once per process too, not once per search."""
    notices = []
    if configs.rebuilding_from is not None:
        notices.append(
            f"The keyword index is being rebuilt from the text search configuration {configs.rebuilding_from!r} "
            f"to {configs.config!r} (or a rebuild was interrupted): words match as either reads them until "
            "`python manage.py rebuild_search_index` has finished."
        )
    elif configs.config != settings.SEARCH_TEXT_CONFIG:
        notices.append(
            f"Keyword search uses the text search configuration {configs.config!r}, which its index was built "
            f"with; SEARCH_TEXT_CONFIG is {settings.SEARCH_TEXT_CONFIG!r}. Run `python manage.py "
            "rebuild_search_index` to switch."
        )
    for notice in notices:
        if notice not in _warned_about:
            _warned_about.add(notice)
            logger.warning("%s", notice)
    return tuple(notices)


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
    """The configured provider once its model covers every document and its vector index is
    ready (or it needs none: documents/vector_index.py); until then the previous model's
    provider, if one is configured."""
    current = get_provider()
    previous = get_previous_provider()
    if previous is None:
        return current
    if documents_not_covered(current.model_id) == 0 and vector_index.ready_to_serve(current.model_id):
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
