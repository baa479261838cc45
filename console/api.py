"""GET /api/search: search for scripts and RAG services (docs/architecture.md, "Search API")."""

import logging

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from console.api_auth import NotAuthenticated, api_user, take_search_request
from documents.keyword_index import KeywordIndexError
from documents.providers.base import EmbeddingError
from documents.search import DEFAULT_MODE, MAX_RESULTS, SearchError, parse_metadata_filter, parse_time
from queue_admin.searching import search

logger = logging.getLogger("sidecar.search")

DEFAULT_K = 10


def _error(status: int, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@never_cache
@require_safe
def search_api(request):
    """Steps: authenticate (401), count against the user's limit (429), parse `k`, `mode`,
    `source`, `filter`, `updated_after` and `updated_before` (400), search (400 for a bad
    query, 503 when the provider fails or keyword search is not set up), answer the results."""
    try:
        user = api_user(request)
    except NotAuthenticated as exc:
        return _error(401, str(exc), WWW_Authenticate='Bearer realm="sidecar"')
    retry_after = take_search_request(user.pk, settings.SEARCH_RATE_LIMIT_PER_MINUTE)
    if retry_after is not None:
        return _error(
            429,
            f"Too many searches: the limit is {settings.SEARCH_RATE_LIMIT_PER_MINUTE} a minute. "
            f"Try again in {retry_after} s.",
            Retry_After=str(retry_after),
        )
    raw_k = request.GET.get("k", "").strip() or str(DEFAULT_K)
    try:
        k = int(raw_k)
    except ValueError:
        return _error(400, f"k must be a whole number between 1 and {MAX_RESULTS}, not {raw_k[:20]!r}.")
    parameters = request.GET
    try:
        result = search(
            parameters.get("q", ""), k,
            mode=parameters.get("mode", "").strip() or DEFAULT_MODE,
            source=parameters.get("source", "").strip() or None,
            metadata=parse_metadata_filter(raw_filter) if (raw_filter := parameters.get("filter", "").strip()) else None,
            updated_after=_time(parameters, "updated_after"),
            updated_before=_time(parameters, "updated_before"),
        )  # fmt: skip
    except SearchError as exc:
        return _error(400, str(exc))
    except KeywordIndexError as exc:
        logger.error("keyword search is unavailable: %s", exc)
        return _error(503, f"{exc} Until then, search with mode=vector.")
    except EmbeddingError as exc:
        # The details (provider URL, status) go to the log, not to API callers; the caller may
        # retry, so say when if the provider said.
        logger.warning("search failed: the embedding provider is unavailable (%s)", exc)
        headers = {"Retry_After": str(max(1, round(exc.retry_after)))} if exc.retry_after else {}
        return _error(
            503, f"The embedding provider is unavailable ({exc.kind} error); try again later.", **headers
        )
    return JsonResponse(result.as_dict())


def _time(parameters, name: str):
    text = parameters.get(name, "").strip()
    return parse_time(text, name) if text else None
